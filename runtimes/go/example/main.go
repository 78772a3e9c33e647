// The go runtime's example function (deployed as hello-go by `fnhost serve --examples`).
package main

import (
	"context"
	"fmt"

	"fnhost"
)

type event struct {
	Name string `json:"name"`
}

type greeting struct {
	Message   string `json:"message"`
	Runtime   string `json:"runtime"`
	RequestID string `json:"request_id"`
}

func handler(ctx context.Context, e event) (greeting, error) {
	name := e.Name
	if name == "" {
		name = "world"
	}
	fmt.Printf("greeting %s\n", name)
	lc, _ := fnhost.FromContext(ctx)
	return greeting{Message: "Hello, " + name + "!", Runtime: "go", RequestID: lc.AwsRequestID}, nil
}

func main() {
	fnhost.Start(handler)
}

module fnhost

// The oldest Go a function may be built with: generics (StartHandlerFunc) and time.UnixMilli.
go 1.21

# The handler: gets the event (JSON text) as $1, prints the response; logs go to stderr.
handler() {
	echo "greeting: $1" >&2
	printf '{"message": "Hello from bash", "runtime": "provided", "event": %s}' "$1"
}

def handler(event:, context:)
  name = event.is_a?(Hash) ? event.fetch('name', 'world') : 'world'
  puts "greeting #{name}"
  { message: "Hello, #{name}!", runtime: 'ruby', request_id: context.aws_request_id }
end

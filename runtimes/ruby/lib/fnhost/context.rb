# frozen_string_literal: true

module FnHost
  # What stays the same for every invocation of this worker, taken from INIT once.
  FunctionInfo = Struct.new(
    :function_name, :function_version, :memory_limit_in_mb,
    :log_group_name, :log_stream_name, :invoked_function_arn,
    keyword_init: true
  ) do
    def self.from_init(init)
      name = init['function_name'] || ENV['AWS_LAMBDA_FUNCTION_NAME'].to_s
      new(
        function_name: name,
        function_version: init['function_version'] || ENV['AWS_LAMBDA_FUNCTION_VERSION'] || '$LATEST',
        # A String, as in Lambda's Ruby runtime (which reads it from the environment).
        memory_limit_in_mb: (init['memory_mb'] || ENV['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']).to_s,
        log_group_name: init['log_group_name'] || ENV['AWS_LAMBDA_LOG_GROUP_NAME'],
        log_stream_name: init['log_stream_name'] || ENV['AWS_LAMBDA_LOG_STREAM_NAME'],
        invoked_function_arn: init['invoked_function_arn'].to_s.empty? ? default_arn(name) : init['invoked_function_arn']
      ).freeze
    end

    # The unqualified ARN, when the daemon sends none: the same as the other shims.
    def self.default_arn(name)
      region = ENV['AWS_REGION'].to_s
      "arn:aws:lambda:#{region.empty? ? 'local' : region}:000000000000:function:#{name}"
    end
  end

  # INVOKE's context (protocol version 2) is not the JSON object the protocol describes.
  class InvalidContext < StandardError; end

  # [client context Hash or nil, invoked ARN or nil] from INVOKE's context JSON; raises InvalidContext.
  def self.parse_context(raw)
    raw.force_encoding(Encoding::UTF_8)
    raise InvalidContext, 'it is not valid UTF-8' unless raw.valid_encoding?

    context = JSON.parse(raw)
    raise InvalidContext, 'it is not a JSON object' unless context.is_a?(Hash)

    client_context = context['client_context']
    arn = context['invoked_function_arn']
    raise InvalidContext, 'client_context is not a JSON object' unless client_context.nil? || client_context.is_a?(Hash)
    raise InvalidContext, 'invoked_function_arn is not a string' unless arn.nil? || arn.is_a?(String)

    client = client_context && client_context['client']
    raise InvalidContext, 'client_context.client is not a JSON object' unless client.nil? || client.is_a?(Hash)

    [client_context, arn.nil? || arn.empty? ? nil : arn]
  rescue JSON::ParserError, SystemStackError => e
    raise InvalidContext, "it is not JSON: #{e.message}"
  end

  # The context object handlers receive, with the names of Lambda's Ruby runtime.
  class LambdaContext
    attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
                :function_name, :memory_limit_in_mb, :function_version, :identity,
                :client_context, :deadline_ms

    # client_context: Lambda's ClientContext as a Hash (as Lambda's Ruby runtime parses it), or
    # nil; invoked_function_arn: the ARN the caller used, or nil for the unqualified one.
    def initialize(info, request_id, deadline_ms, client_context = nil, invoked_function_arn = nil)
      @aws_request_id = request_id
      @deadline_ms = deadline_ms
      @function_name = info.function_name
      @function_version = info.function_version
      @memory_limit_in_mb = info.memory_limit_in_mb
      @log_group_name = info.log_group_name
      @log_stream_name = info.log_stream_name
      @invoked_function_arn = invoked_function_arn || info.invoked_function_arn
      @identity = nil
      @client_context = client_context
    end

    # The INVOKE deadline is wall-clock epoch milliseconds, so compare with the wall clock.
    def get_remaining_time_in_millis
      remaining = @deadline_ms - Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
      remaining.positive? ? remaining : 0
    end
  end
end

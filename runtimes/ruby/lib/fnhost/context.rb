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
        # fnhost has no account or region; the same placeholder ARN as the other shims.
        invoked_function_arn: init['invoked_function_arn'] ||
          "arn:aws:lambda:local:000000000000:function:#{name}"
      ).freeze
    end
  end

  # The context object handlers receive, with the names of Lambda's Ruby runtime.
  class LambdaContext
    attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
                :function_name, :memory_limit_in_mb, :function_version, :identity,
                :client_context, :deadline_ms

    def initialize(info, request_id, deadline_ms)
      @aws_request_id = request_id
      @deadline_ms = deadline_ms
      @function_name = info.function_name
      @function_version = info.function_version
      @memory_limit_in_mb = info.memory_limit_in_mb
      @log_group_name = info.log_group_name
      @log_stream_name = info.log_stream_name
      @invoked_function_arn = info.invoked_function_arn
      @identity = nil
      @client_context = nil
    end

    # The INVOKE deadline is wall-clock epoch milliseconds, so compare with the wall clock.
    def get_remaining_time_in_millis
      remaining = @deadline_ms - Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
      remaining.positive? ? remaining : 0
    end
  end
end

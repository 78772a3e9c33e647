# frozen_string_literal: true

require 'json'
require_relative 'channel'
require_relative 'context'
require_relative 'errors'
require_relative 'loader'
require_relative 'stem_cell'

module FnHost
  # INIT (or a stem cell's SPECIALISE), then INVOKE after INVOKE, for one function. Frames arrive
  # through a queue filled by the reader thread (see bootstrap.rb), which is what lets the worker
  # die on end of file even while a handler runs.
  class Worker
    # A RESULT frame also carries its kind byte, id_len byte and up to 255 bytes of request id.
    MAX_RESULT = Channel::MAX_FRAME - 257

    def initialize(channel, inbox)
      @channel = channel
      @inbox = inbox
    end

    def run
      kind, body = @inbox.pop
      unless kind == Channel::INIT || kind == Channel::SPECIALISE
        protocol_violation("expected INIT or SPECIALISE, got frame kind #{kind}")
      end
      init = JSON.parse(body)
      specialise(init) if kind == Channel::SPECIALISE
      # From here on a stem cell is what a spawned worker is at INIT: everything below reads the
      # function's environment.
      @info = FunctionInfo.from_init(init)
      @handler = load_handler(init)
      flush_std
      @channel.write_frame(Channel::INIT_OK)
      serve
    end

    private

    def expect(kind)
      got, body = @inbox.pop
      protocol_violation("expected frame kind #{kind}, got #{got}") unless got == kind
      body
    end

    def load_handler(init)
      env = init['environment']
      env&.each { |key, value| ENV[key.to_s] = value.nil? ? nil : value.to_s }
      code_dir = init['code_dir'] || Dir.pwd
      begin
        Dir.chdir(code_dir)
      rescue SystemCallError => e
        init_failed(InitFailure.new('Runtime.ImportModuleError',
                                    "Cannot use code directory #{code_dir}: #{e.message}"))
      end
      Loader.new(init['handler'] || ENV['_HANDLER'], code_dir).load
    rescue InitFailure => e
      init_failed(e)
    end

    def specialise(spec)
      StemCell.specialise(spec)
    rescue StemCell::Failure => e
      init_failed(InitFailure.new('Runtime.SpecialiseError', e.message))
    end

    # After INIT_ERROR nothing useful is left to do; exit! skips at_exit hooks of user code
    # that may not have finished loading.
    def init_failed(failure)
      flush_std
      trace = failure.original&.backtrace
      @channel.write_frame(Channel::INIT_ERROR, Errors.to_json(failure.error_type, failure.message, trace))
      exit!(1)
    end

    def serve
      loop do
        body = expect(Channel::INVOKE)
        id_len = body.getbyte(0)
        # id_len and the id, echoed verbatim at the front of RESULT/ERROR.
        id_head = body.byteslice(0, 1 + id_len)
        request_id = body.byteslice(1, id_len).force_encoding(Encoding::UTF_8)
        deadline_ms, context_len = body.byteslice(1 + id_len, 12).unpack('Q>L>')
        start = 13 + id_len + context_len
        raw_context = body.byteslice(13 + id_len, context_len)
        payload = body.byteslice(start, body.bytesize - start)
        protocol_violation('INVOKE context runs past the end of the frame') if payload.nil?
        kind, reply = invoke(request_id, deadline_ms, raw_context, payload)
        flush_std
        @channel.write_frame(kind, id_head, reply)
      end
    end

    def invoke(request_id, deadline_ms, raw_context, payload)
      client_context = arn = nil
      begin
        client_context, arn = FnHost.parse_context(raw_context) unless raw_context.empty?
      rescue InvalidContext => e
        return [Channel::ERROR,
                Errors.to_json('Runtime.InvalidContext', "Unable to parse the invocation's context: #{e.message}")]
      end
      begin
        event = parse_event(payload)
      rescue UnparsableEvent => e
        return [Channel::ERROR,
                Errors.to_json('Runtime.UnmarshalError', "Unable to parse the event as JSON: #{e.message}")]
      end
      context = LambdaContext.new(@info, request_id, deadline_ms, client_context, arn)
      begin
        result = @handler.call(event, context)
      rescue SystemExit, SignalException
        # exit/exit! and the daemon's SIGTERM end the worker, as they would any Ruby program.
        raise
      rescue Exception => e
        return [Channel::ERROR, Errors.for_exception(e)]
      end
      marshal(result)
    end

    class UnparsableEvent < StandardError; end

    def parse_event(payload)
      # An empty payload is an invocation without an event, which Lambda delivers as {}.
      return {} if payload.empty?

      payload.force_encoding(Encoding::UTF_8)
      raise UnparsableEvent, 'it is not valid UTF-8' unless payload.valid_encoding?

      JSON.parse(payload)
    rescue JSON::ParserError => e
      raise UnparsableEvent, e.message
    end

    def marshal(result)
      json = JSON.generate(result)
      if json.bytesize > MAX_RESULT
        return [Channel::ERROR, Errors.to_json('Function.ResponseSizeTooLarge',
                                               "Response payload size (#{json.bytesize} bytes) exceeded " \
                                               "the worker protocol's #{Channel::MAX_FRAME}-byte frame limit")]
      end
      [Channel::RESULT, json]
    rescue SystemExit, SignalException
      raise
    rescue Exception => e
      # Serialising may run the result's own to_json, which is user code: whatever it raises is a
      # marshalling failure too, and then its frames are worth showing; the json library's are not.
      trace = e.is_a?(JSON::JSONError) ? nil : e.backtrace
      [Channel::ERROR, Errors.to_json('Runtime.MarshalError',
                                      "Unable to marshal the handler's result as JSON: " \
                                      "#{Errors.type_name(e)}: #{Errors.message_of(e)}", trace)]
    end

    # Everything the user printed belongs to this invocation, so it must reach the pipes before
    # the daemon sees RESULT/ERROR.
    def flush_std
      $stdout.flush
      $stderr.flush
    rescue StandardError
      # A closed or replaced $stdout must not take the worker down with it.
      nil
    end

    def protocol_violation(what)
      warn "fnhost ruby worker: protocol violation: #{what}"
      exit!(1)
    end
  end
end

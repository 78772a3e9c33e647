# frozen_string_literal: true

module FnHost
  # Loading the handler failed; error_type is one of the Runtime.* names of the protocol.
  class InitFailure < StandardError
    attr_reader :error_type, :original

    def initialize(error_type, message, original = nil)
      super(message)
      @error_type = error_type
      @original = original
    end
  end

  # Lambda's error JSON: {"errorType", "errorMessage", "stackTrace": [strings]}.
  module Errors
    # This shim's own files, which never belong in a user's stack trace. Not the whole runtime
    # folder: example/ there holds user code.
    SHIM_PREFIXES = [
      "#{__dir__}/",
      "#{File.expand_path('../../bootstrap.rb', __dir__)}:"
    ].freeze
    # Lambda's Ruby runtime keeps at most this many frames.
    MAX_FRAMES = 100

    module_function

    def to_json(error_type, message, backtrace = nil)
      JSON.generate(
        'errorType' => text(error_type),
        'errorMessage' => text(message),
        'stackTrace' => user_frames(backtrace)
      )
    end

    # A handler's own exception: errorType is its class name as Ruby spells it (RuntimeError,
    # ArgumentError, MyApp::Oops), the shape the protocol asks for.
    def for_exception(exc)
      to_json(type_name(exc), message_of(exc), exc.backtrace)
    end

    def type_name(exc)
      exc.class.name || exc.class.inspect
    end

    # Exception#message is user code and can itself raise.
    def message_of(exc)
      exc.message
    rescue Exception
      "#{type_name(exc)} (its message could not be read)"
    end

    # Backtrace lines as Lambda shows them ("/code/app.rb:3:in `handler'"), minus this shim's
    # own frames wherever they appear: the lazy require in gems.rb sits between user frames.
    def user_frames(backtrace)
      return [] unless backtrace

      frames = []
      backtrace.each do |line|
        next if line.start_with?(*SHIM_PREFIXES)

        frames << text(line)
        break if frames.size == MAX_FRAMES
      end
      frames
    end

    # JSON.generate refuses invalid UTF-8, and an error report must never fail to serialise.
    def text(value)
      s = value.to_s
      s = if s.encoding == Encoding::BINARY
            s.dup.force_encoding(Encoding::UTF_8)
          else
            s.encode(Encoding::UTF_8, invalid: :replace, undef: :replace)
          end
      s.valid_encoding? ? s : s.scrub
    end
  end
end

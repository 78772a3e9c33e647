# frozen_string_literal: true

module FnHost
  # Frames of protos/worker-protocol.md over the two pipe fds the daemon passed us.
  #
  # Deliberately free of the json library: bootstrap.rb sends HELLO through this class before
  # anything else is loaded.
  class Channel
    HELLO = 1
    INIT = 2
    INIT_OK = 3
    INIT_ERROR = 4
    INVOKE = 5
    RESULT = 6
    ERROR = 7
    SPECIALISE = 8

    MAX_FRAME = 16 * 1024 * 1024
    EMPTY = ''.b.freeze

    class ProtocolError < StandardError; end

    def initialize(in_fd, out_fd)
      # autoclose: false because the fds belong to the process, not to these IO objects.
      @in = IO.for_fd(in_fd, 'rb', autoclose: false)
      @out = IO.for_fd(out_fd, 'wb', autoclose: false)
      # The daemon's pass_fds made them inheritable; programs the user's code runs must not
      # hold the protocol pipes open (a child holding <out> would hide our death from the daemon).
      @in.close_on_exec = true
      @out.close_on_exec = true
      # A frame goes out in one writev, never parked in Ruby's buffer.
      @out.sync = true
    end

    # The next frame as [kind, body], or nil once the daemon has closed its end.
    # IO#read(n) blocks until n bytes or end of file and releases the GVL while it waits, so the
    # thread that calls this never holds up the handler.
    def read_frame
      head = @in.read(5)
      return nil if head.nil? || head.bytesize < 5

      length, kind = head.unpack('NC')
      raise ProtocolError, "frame length #{length} out of range" if length < 1 || length > MAX_FRAME
      return [kind, EMPTY] if length == 1

      body = @in.read(length - 1)
      return nil if body.nil? || body.bytesize < length - 1

      [kind, body]
    end

    # Writes one frame whose body is the concatenation of parts, without concatenating them:
    # a multi-argument write on a sync IO is a single writev.
    def write_frame(kind, *parts)
      size = 1
      parts.each { |part| size += part.bytesize }
      raise ProtocolError, "frame of #{size} bytes exceeds #{MAX_FRAME}" if size > MAX_FRAME

      @out.write([size, kind].pack('NC'), *parts)
    end
  end
end

# frozen_string_literal: true

# fnhost's Ruby worker: speaks protos/worker-protocol.md and runs one Lambda-style handler.
# Standard library only. Started with --disable-gems (see lib/fnhost/gems.rb for when RubyGems
# is loaded after all).

control = ENV.delete('FNHOST_CONTROL_FDS') or abort 'fnhost ruby worker: FNHOST_CONTROL_FDS is not set'
in_fd, out_fd = control.split(',').map { |fd| Integer(fd) }

require_relative 'lib/fnhost/channel'
channel = FnHost::Channel.new(in_fd, out_fd)
# HELLO first, before even the json library loads: the daemon's clock is running. Protocol 3: a
# worker started as a stem cell, before its function is known, waits here for SPECIALISE
# (lib/fnhost/stem_cell.rb) and must read nothing of a function's before it arrives.
channel.write_frame(
  FnHost::Channel::HELLO,
  %({"protocol":3,"runtime":"ruby","runtime_version":"#{RUBY_VERSION}","pid":#{Process.pid}})
)

# The daemon gone (end of file on <in>) means exit now, even in the middle of a handler. A
# thread blocked in read does not hold the GVL, and Ruby's timer preempts a busy handler within
# its 100 ms time slice, so this thread gets to run.
inbox = Thread::Queue.new
reader = Thread.new do
  while (frame = channel.read_frame)
    inbox << frame
  end
  exit!(0)
rescue Exception => e
  warn "fnhost ruby worker: control channel broken: #{e.class}: #{e.message}"
  exit!(1)
end
reader.name = 'fnhost-reader'

# Lambda's Ruby runtime does the same: output reaches the log as it is written, and survives the
# process being killed at a timeout.
$stdout.sync = true

require_relative 'lib/fnhost/worker'
FnHost::Worker.new(channel, inbox).run

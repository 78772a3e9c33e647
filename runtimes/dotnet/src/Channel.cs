// Frames over the two inherited pipes (protos/worker-protocol.md, "Frames").
using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;

namespace Fnhost.Runtime
{
    internal static class Kind
    {
        public const byte Hello = 1, Init = 2, InitOk = 3, InitError = 4, Invoke = 5, Result = 6, Error = 7, Specialise = 8;
    }

    internal struct Frame
    {
        public byte Kind;
        public byte[] Body;
    }

    internal sealed class Channel
    {
        public const int MaxFrame = 16 * 1024 * 1024;

        private readonly int inFd;
        private readonly int outFd;
        private readonly byte[] header = new byte[5];

        // Small frames arrive whole in one read(2) through this buffer; a large body is read
        // straight into its own array.
        private readonly byte[] readBuffer = new byte[65536];
        private int readPos, readEnd;

        // Set only when poll(2) is unavailable: a reader thread then owns the pipe and hands
        // frames over here, so that it alone sees end of file, even mid-handler.
        private Queue<Frame> handoff;

        public Channel(int inFd, int outFd)
        {
            this.inFd = inFd;
            this.outFd = outFd;
        }

        /// <summary>Exit with status 0 as soon as the daemon closes its end of our input pipe.</summary>
        public void WatchForDaemonExit()
        {
            Thread thread;
            if (Native.CanPoll(inFd))
            {
                thread = new Thread(() =>
                {
                    Native.WaitForHangup(inFd);
                    Native.HardExit(0);
                });
            }
            else
            {
                handoff = new Queue<Frame>();
                thread = new Thread(ReadIntoHandoff);
            }
            thread.IsBackground = true;
            thread.Name = "fnhost-eof-watch";
            thread.Start();
        }

        /// <summary>True when a frame (or end of file) has arrived and Read would not wait for it.</summary>
        public bool FrameWaiting()
        {
            return handoff != null || readPos < readEnd || Native.Readable(inFd);
        }

        public Frame Read()
        {
            if (handoff == null)
                return ReadFromPipe();
            lock (handoff)
            {
                while (handoff.Count == 0)
                    Monitor.Wait(handoff);
                return handoff.Dequeue();
            }
        }

        private void ReadIntoHandoff()
        {
            while (true)
            {
                Frame frame = ReadFromPipe();
                lock (handoff)
                {
                    handoff.Enqueue(frame);
                    Monitor.Pulse(handoff);
                }
            }
        }

        private Frame ReadFromPipe()
        {
            Fill(header, 5);
            uint length = (uint)(header[0] << 24 | header[1] << 16 | header[2] << 8 | header[3]);
            if (length < 1 || length > MaxFrame)
            {
                Console.Error.WriteLine("fnhost: frame length " + length + " out of range; control channel broken");
                Native.HardExit(1);
            }
            var body = new byte[length - 1];
            Fill(body, body.Length);
            return new Frame { Kind = header[4], Body = body };
        }

        private void Fill(byte[] buffer, int count)
        {
            int got = Math.Min(count, readEnd - readPos);
            Buffer.BlockCopy(readBuffer, readPos, buffer, 0, got);
            readPos += got;
            while (got < count)
            {
                int n;
                bool direct = count - got >= readBuffer.Length;
                try
                {
                    n = direct ? Native.Read(inFd, buffer, got, count - got) : Native.Read(inFd, readBuffer, 0, readBuffer.Length);
                }
                catch (IOException)
                {
                    n = 0;
                }
                if (n <= 0)
                    Native.HardExit(0); // the daemon is gone: so are we
                if (direct)
                {
                    got += n;
                    continue;
                }
                int take = Math.Min(n, count - got);
                Buffer.BlockCopy(readBuffer, 0, buffer, got, take);
                got += take;
                readPos = take;
                readEnd = n;
            }
        }

        /// <summary>Writes a frame laid out by FrameBuffer (header included).</summary>
        public void Write(FrameBuffer frame)
        {
            frame.SealHeader();
            Send(frame.Data, 0, frame.Length);
        }

        /// <summary>Writes a frame whose tail is a caller's buffer, so a large result is not copied.</summary>
        public void Write(FrameBuffer head, byte[] tail, int offset, int count)
        {
            head.SealHeader(count);
            Send(head.Data, 0, head.Length);
            Send(tail, offset, count);
        }

        private void Send(byte[] data, int offset, int count)
        {
            try
            {
                Native.WriteAll(outFd, data, offset, count);
            }
            catch (IOException)
            {
                Native.HardExit(0); // EPIPE: the daemon is gone
            }
        }
    }

    /// <summary>
    /// A growable byte buffer that starts with room for a frame header, so a frame is built in
    /// place and written with one call.
    /// </summary>
    internal sealed class FrameBuffer
    {
        private const int KeepCapacity = 1 << 20;

        public byte[] Data = new byte[4096];
        public int Length;

        public void Start(byte kind)
        {
            if (Data.Length > KeepCapacity)
                Data = new byte[4096]; // a one-off large result should not stay resident
            Data[4] = kind;
            Length = 5;
        }

        public void StartReply(byte kind, byte[] invokeBody)
        {
            Start(kind);
            int idLen = invokeBody[0];
            Append(invokeBody, 0, 1 + idLen);
        }

        public void SealHeader(int extra = 0)
        {
            if (Length + extra - 4 > Channel.MaxFrame)
                throw new FrameTooLargeException(Length + extra - 4);
            uint n = (uint)(Length - 4 + extra);
            Data[0] = (byte)(n >> 24);
            Data[1] = (byte)(n >> 16);
            Data[2] = (byte)(n >> 8);
            Data[3] = (byte)n;
        }

        public void Reserve(int more)
        {
            if (Length + more <= Data.Length)
                return;
            if ((long)Length + more > Channel.MaxFrame + 4)
                throw new FrameTooLargeException((long)Length + more - 4);
            long size = Math.Min(Math.Max((long)Data.Length * 2, (long)Length + more), Channel.MaxFrame + 4);
            Array.Resize(ref Data, (int)size);
        }

        public void Append(byte b)
        {
            if (Length == Data.Length)
                Reserve(1);
            Data[Length++] = b;
        }

        public void Append(byte[] src, int offset, int count)
        {
            Reserve(count);
            Buffer.BlockCopy(src, offset, Data, Length, count);
            Length += count;
        }

        /// <summary>Appends a string known to be ASCII (numbers, literals, escapes).</summary>
        public void AppendAscii(string s)
        {
            Reserve(s.Length);
            for (int i = 0; i < s.Length; i++)
                Data[Length++] = (byte)s[i];
        }
    }

    internal sealed class FrameTooLargeException : Exception
    {
        public FrameTooLargeException(long size)
            : base("response of " + size + " bytes exceeds the 16 MiB frame limit")
        {
        }
    }
}

# The control channel of protos/worker-protocol.md: frames (u32 big-endian length, u8 kind, body)
# over the two pipes named in FNHOST_CONTROL_FDS. A read is always outstanding while user code
# runs, so that end of file (the daemon is gone) ends the worker at once, whatever the handler does.

$script:FrameHello = 1
$script:FrameInit = 2
$script:FrameInitOk = 3
$script:FrameInitError = 4
$script:FrameInvoke = 5
$script:FrameResult = 6
$script:FrameError = 7
$script:FrameSpecialise = 8
$script:MaxFrame = 16777216

# Received bytes not yet consumed are ReadBuffer[ReadStart, ReadEnd). A frame is decoded where it
# lies, so its bytes stay valid only until the next Start-FrameRead (which may move the buffer).
$script:InitialReadBuffer = 1MB
$script:ReadBuffer = [byte[]]::new($script:InitialReadBuffer)
$script:ReadStart = 0
$script:ReadEnd = 0
$script:ReadTask = $null
$script:MinReadSpace = 64KB
$script:ShrinkReadBufferAbove = 4MB

function Stop-Worker([string]$Reason) {
    [Console]::Error.WriteLine("fnhost powershell runtime: $Reason")
    [Console]::Error.Flush()
    [Environment]::Exit(1)
}

function Open-Channel {
    $spec = [string][Environment]::GetEnvironmentVariable('FNHOST_CONTROL_FDS')
    if (-not ($spec -match '^(\d+),(\d+)$')) {
        throw "FNHOST_CONTROL_FDS is '$spec', expected '<in>,<out>'"
    }
    $script:InFd = [int]$Matches[1]
    $script:OutFd = [int]$Matches[2]
    # .NET hands its own copy of the environment to $env: and to every child process it starts, so
    # removing the variable here hides the channel from user code and from what it runs.
    [Environment]::SetEnvironmentVariable('FNHOST_CONTROL_FDS', $null)
    # bufferSize 1 means unbuffered: a frame goes out in the writes Send-Frame makes, no later.
    $script:ChannelIn = [System.IO.FileStream]::new(
        [Microsoft.Win32.SafeHandles.SafeFileHandle]::new([IntPtr]$script:InFd, $true),
        [System.IO.FileAccess]::Read, 1)
    $script:ChannelOut = [System.IO.FileStream]::new(
        [Microsoft.Win32.SafeHandles.SafeFileHandle]::new([IntPtr]$script:OutFd, $true),
        [System.IO.FileAccess]::Write, 1)
}

# The fds were inherited without close-on-exec; .NET has no fcntl, so it is a stub emitted at run
# time (Native.ps1). Without it a program the handler starts would hold the channel open, which is
# untidy but harmless, hence failure is ignored.
function Set-ChannelCloseOnExec {
    try {
        $native = Get-NativeType
        foreach ($fd in @($script:InFd, $script:OutFd)) {
            $flags = $native::fcntl($fd, 1, 0)                      # F_GETFD
            if ($flags -ge 0) { [void]$native::fcntl($fd, 2, ($flags -bor 1)) }   # F_SETFD, FD_CLOEXEC
        }
    } catch {
        [Console]::Error.WriteLine("fnhost powershell runtime: could not set close-on-exec on the channel: $($_.Exception.Message)")
    }
}

# JSON string literal without ConvertTo-Json, whose module is not loaded yet when HELLO and early
# INIT errors are written.
$script:JsonControlEscaper = [System.Text.RegularExpressions.MatchEvaluator] {
    param($found)
    '\u{0:x4}' -f [int][char]$found.Value
}

function ConvertTo-JsonString([string]$Value) {
    $escaped = $Value.Replace('\', '\\').Replace('"', '\"')
    $escaped = [regex]::Replace($escaped, '[\x00-\x1f]', $script:JsonControlEscaper)
    return '"' + $escaped + '"'
}

# Head: the bytes between the kind and the body (the length-prefixed request id of RESULT/ERROR).
function Send-Frame([int]$Kind, [byte[]]$Head, [byte[]]$Body) {
    $headLength = 0
    if ($null -ne $Head) { $headLength = $Head.Length }
    $bodyLength = 0
    if ($null -ne $Body) { $bodyLength = $Body.Length }
    $prefix = [byte[]]::new(5 + $headLength)
    $length = [System.BitConverter]::GetBytes([System.Net.IPAddress]::HostToNetworkOrder([int](1 + $headLength + $bodyLength)))
    [System.Array]::Copy($length, 0, $prefix, 0, 4)
    $prefix[4] = [byte]$Kind
    if ($headLength -gt 0) { [System.Array]::Copy($Head, 0, $prefix, 5, $headLength) }
    try {
        $script:ChannelOut.Write($prefix, 0, $prefix.Length)
        if ($bodyLength -gt 0) { $script:ChannelOut.Write($Body, 0, $bodyLength) }
        $script:ChannelOut.Flush()
    } catch {
        Stop-Worker "writing to the control channel failed: $($_.Exception.GetBaseException().Message)"
    }
}

function Send-Hello {
    $json = '{"protocol":3,"runtime":"powershell","runtime_version":' +
        (ConvertTo-JsonString $PSVersionTable.PSVersion.ToString()) + ',"pid":' + $PID + '}'
    Send-Frame $script:FrameHello $null ([System.Text.Encoding]::UTF8.GetBytes($json))
}

function Get-FrameLength([int]$Offset) {
    return [long][System.Net.IPAddress]::NetworkToHostOrder([System.BitConverter]::ToInt32($script:ReadBuffer, $Offset))
}

# Issues the next read unless one is outstanding, first making room for it: at least
# MinReadSpace free bytes, and the whole of a frame whose header has arrived.
function Start-FrameRead {
    if ($null -ne $script:ReadTask) { return }
    $buffered = $script:ReadEnd - $script:ReadStart
    if ($buffered -eq 0) {
        $script:ReadStart = 0
        $script:ReadEnd = 0
        # One large event should not pin its buffer for the rest of the worker's life.
        if ($script:ReadBuffer.Length -gt $script:ShrinkReadBufferAbove) {
            $script:ReadBuffer = [byte[]]::new($script:InitialReadBuffer)
        }
    }
    $needed = $buffered + $script:MinReadSpace
    if ($buffered -ge 4) {
        $frameLength = Get-FrameLength $script:ReadStart
        if ($frameLength -ge 1 -and $frameLength -le $script:MaxFrame -and 4 + $frameLength -gt $needed) {
            $needed = 4 + [int]$frameLength
        }
    }
    if ($script:ReadBuffer.Length - $script:ReadStart -lt $needed) {
        $target = $script:ReadBuffer
        if ($target.Length -lt $needed) {
            $target = [byte[]]::new([System.Math]::Max($needed, 2 * $script:ReadBuffer.Length))
        }
        # Array.Copy is specified to be correct when source and target overlap.
        [System.Array]::Copy($script:ReadBuffer, $script:ReadStart, $target, 0, $buffered)
        $script:ReadBuffer = $target
        $script:ReadStart = 0
        $script:ReadEnd = $buffered
    }
    $script:ReadTask = $script:ChannelIn.ReadAsync(
        $script:ReadBuffer, $script:ReadEnd, $script:ReadBuffer.Length - $script:ReadEnd)
}

# Waits for the outstanding read; end of file ends the worker with status 0.
function Complete-FrameRead {
    try {
        $count = $script:ReadTask.GetAwaiter().GetResult()
    } catch {
        Stop-Worker "reading the control channel failed: $($_.Exception.GetBaseException().Message)"
    }
    $script:ReadTask = $null
    if ($count -le 0) {
        [Environment]::Exit(0)
    }
    $script:ReadEnd += $count
}

# A complete frame already buffered, as @{ Kind; Offset; Length } (offset and length of the body
# in ReadBuffer), or $null.
function Get-BufferedFrame {
    $buffered = $script:ReadEnd - $script:ReadStart
    if ($buffered -lt 5) { return $null }
    $length = Get-FrameLength $script:ReadStart
    if ($length -lt 1 -or $length -gt $script:MaxFrame) {
        Stop-Worker "received a frame length of $length (allowed: 1 to $($script:MaxFrame))"
    }
    if ($buffered - 4 -lt $length) { return $null }
    $frame = @{
        Kind = [int]$script:ReadBuffer[$script:ReadStart + 4]
        Offset = $script:ReadStart + 5
        Length = [int]$length - 1
    }
    $script:ReadStart += 4 + [int]$length
    return $frame
}

function Read-Frame {
    while ($true) {
        $frame = Get-BufferedFrame
        if ($null -ne $frame) { return $frame }
        Start-FrameRead
        Complete-FrameRead
    }
}

# INVOKE body: id_len u8, request id, deadline u64 (epoch ms), context_len u32, context (JSON, or
# nothing), payload. Head keeps id_len and the id as received, which is exactly how RESULT and
# ERROR must begin.
function Read-InvokeFrame($Frame) {
    $buffer = $script:ReadBuffer
    $offset = $Frame.Offset
    $idLength = [int]$buffer[$offset]
    if ($Frame.Length -lt 1 + $idLength + 12) {
        Stop-Worker "INVOKE body of $($Frame.Length) bytes cannot hold a $idLength-byte request id, a deadline and a context length"
    }
    $head = [byte[]]::new(1 + $idLength)
    [System.Array]::Copy($buffer, $offset, $head, 0, 1 + $idLength)
    $contextOffset = $offset + 1 + $idLength + 12
    # u32 big-endian, read as a signed Int32 and widened without its sign.
    $contextLength = [long][System.Net.IPAddress]::NetworkToHostOrder([System.BitConverter]::ToInt32($buffer, $offset + 1 + $idLength + 8)) -band 4294967295
    if ($contextLength -gt $offset + $Frame.Length - $contextOffset) {
        Stop-Worker "INVOKE context of $contextLength bytes runs past the end of the frame"
    }
    $payloadOffset = $contextOffset + [int]$contextLength
    return @{
        Head = $head
        RequestId = [System.Text.Encoding]::ASCII.GetString($buffer, $offset + 1, $idLength)
        DeadlineMs = [System.Net.IPAddress]::NetworkToHostOrder([System.BitConverter]::ToInt64($buffer, $offset + 1 + $idLength))
        Context = [System.Text.Encoding]::UTF8.GetString($buffer, $contextOffset, [int]$contextLength)
        Payload = [System.Text.Encoding]::UTF8.GetString($buffer, $payloadOffset, $offset + $Frame.Length - $payloadOffset)
    }
}

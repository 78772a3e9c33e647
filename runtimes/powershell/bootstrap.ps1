# fnhost worker for PowerShell 7 functions: speaks protos/worker-protocol.md over the pipes named
# in FNHOST_CONTROL_FDS and runs handlers the way Lambda's PowerShell runtime does (see
# lib/Handler.ps1). Launched as: pwsh -NoLogo -NoProfile -NonInteractive -File bootstrap.ps1

$ErrorActionPreference = 'Stop'

# Logs are read by machines, not terminals: no colour escapes from pwsh's formatting or host.
if ($null -ne $PSStyle) { $PSStyle.OutputRendering = 'PlainText' }
# Events are UTF-8 and so should be what handlers print, whatever LANG the daemon passes on.
if ([Console]::OutputEncoding.CodePage -ne 65001) {
    # Should the console refuse, handlers still run; only their non-ASCII output suffers.
    try { [Console]::OutputEncoding = [System.Text.UTF8Encoding]::new($false) } catch { }
}

. "$PSScriptRoot/lib/Channel.ps1"
try {
    Open-Channel
    Send-Hello
} catch {
    [Console]::Error.WriteLine("fnhost powershell runtime: cannot use the control channel: $($_.Exception.GetBaseException().Message)")
    [Environment]::Exit(1)
}

. "$PSScriptRoot/lib/Errors.ps1"
. "$PSScriptRoot/lib/Runspace.ps1"
. "$PSScriptRoot/lib/Handler.ps1"
. "$PSScriptRoot/lib/Native.ps1"
. "$PSScriptRoot/lib/Specialise.ps1"
Set-ChannelCloseOnExec
Start-UserRunspace

# A spawned worker gets INIT. A stem cell, started before its function was known (nothing above
# reads anything of a function), waits here silent for SPECIALISE, and takes the function's
# identity, environment and working directory before INIT's work reads any of them.
$frame = Read-Frame
if ($frame.Kind -ne $FrameInit -and $frame.Kind -ne $FrameSpecialise) {
    Stop-Worker "expected INIT (kind $FrameInit) or SPECIALISE (kind $FrameSpecialise) first, got kind $($frame.Kind)"
}
$initJson = [System.Text.Encoding]::UTF8.GetString($ReadBuffer, $frame.Offset, $frame.Length)
$initError = $null
if ($frame.Kind -eq $FrameSpecialise) {
    try {
        $initError = Invoke-Specialise $initJson
        $initJson = $script:SpecialisedInitJson
    } catch {
        $initError = New-ErrorInfo 'Runtime.SpecialiseError' "The PowerShell runtime failed during SPECIALISE: $($_.Exception.GetBaseException().Message)" (Get-ScriptStackLines $_)
    }
}
if ($null -eq $initError) {
    try {
        $initError = Initialize-Function $initJson
    } catch {
        $initError = New-ErrorInfo 'Runtime.Unknown' "The PowerShell runtime failed during INIT: $($_.Exception.GetBaseException().Message)" (Get-ScriptStackLines $_)
    }
}
if ($null -ne $initError) {
    Sync-ConsoleOutput
    Send-Frame $FrameInitError $null (ConvertTo-ErrorBody $initError)
    [Environment]::Exit(1)
}
Sync-ConsoleOutput
Send-Frame $FrameInitOk $null $null

while ($true) {
    $frame = Read-Frame
    if ($frame.Kind -ne $FrameInvoke) { Stop-Worker "expected INVOKE (kind $FrameInvoke), got kind $($frame.Kind)" }
    $invoke = Read-InvokeFrame $frame
    try {
        $reply = Invoke-Function $invoke.RequestId $invoke.DeadlineMs $invoke.Payload $invoke.Context
    } catch {
        $reply = New-ErrorReply (New-ErrorInfo 'Runtime.Unknown' "The PowerShell runtime failed during the invocation: $($_.Exception.GetBaseException().Message)" (Get-ScriptStackLines $_))
    }
    # Everything the invocation printed must reach the daemon before its RESULT or ERROR does.
    Sync-ConsoleOutput
    Send-Frame $reply.Kind $invoke.Head $reply.Body
}

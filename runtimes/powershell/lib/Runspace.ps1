# The user's runspace: opened once, reused warm by every invocation (each with a fresh PowerShell
# instance), kept apart from this one so that the shim's functions and variables never meet the
# user's. Its pipelines run on the runspace's own thread while this thread watches the channel.

$script:StreamPollMs = 100

# Opening takes a good share of a cold start, so it starts right after HELLO and runs while INIT
# is on its way.
function Start-UserRunspace {
    $script:UserRunspace = $null
    $script:UserRunspaceError = $null
    try {
        $state = [System.Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
        # Write-Host, ConvertTo-Json, Start-Sleep, Get-Content and the like: nearly every handler needs these
        # two, and importing them now keeps their cost off the first invocation.
        $state.ImportPSModule([string[]]@('Microsoft.PowerShell.Utility', 'Microsoft.PowerShell.Management'))
        # This process's console host: Write-Host, Write-Information, Write-Warning, Write-Verbose
        # and Write-Debug reach stdout as they happen, formatted as pwsh formats them.
        $runspace = [System.Management.Automation.Runspaces.RunspaceFactory]::CreateRunspace($Host, $state)
        $runspace.Name = 'fnhost-function'
        # One thread for the worker's life: thread-static state in user code stays put between calls.
        $runspace.ThreadOptions = [System.Management.Automation.Runspaces.PSThreadOptions]::ReuseThread
        $runspace.OpenAsync()
        $script:UserRunspace = $runspace
    } catch {
        $script:UserRunspaceError = $_.Exception.GetBaseException().Message
    }
}

# $null once open, else why it could not open.
function Wait-UserRunspace {
    if ($null -eq $script:UserRunspace) { return [string]$script:UserRunspaceError }
    while ($true) {
        $info = $script:UserRunspace.RunspaceStateInfo
        if ($info.State -eq [System.Management.Automation.Runspaces.RunspaceState]::Opened) { return $null }
        if ($info.State -eq [System.Management.Automation.Runspaces.RunspaceState]::Broken -or
            $info.State -eq [System.Management.Automation.Runspaces.RunspaceState]::Closed) {
            if ($null -ne $info.Reason) { return $info.Reason.Message }
            return "the runspace is $($info.State)"
        }
        [System.Threading.Thread]::Sleep(2)
    }
}

function New-UserPowerShell {
    $pipeline = [System.Management.Automation.PowerShell]::Create()
    $pipeline.Runspace = $script:UserRunspace
    return $pipeline
}

function Sync-ConsoleOutput {
    [Console]::Out.Flush()
    [Console]::Error.Flush()
}

# A log line the way a console would show the object: strings as they are, anything else as
# Out-String renders it.
function Format-LogText($Object) {
    if ($Object -is [string]) { return [string]$Object }
    try {
        return (Out-String -InputObject $Object).Trim([char[]]"`r`n")
    } catch {
        return [string]$Object
    }
}

function Write-OutputLog($Outputs, [int]$Count) {
    for ($i = 0; $i -lt $Count; $i++) {
        if ($null -ne $Outputs[$i]) { [Console]::Out.WriteLine((Format-LogText $Outputs[$i])) }
    }
}

# Non-terminating errors (Write-Error, a cmdlet's failure) land in the pipeline's error stream,
# which no host displays for an API-invoked pipeline: they go to stderr from here.
function Write-ErrorStream([System.Management.Automation.PowerShell]$Pipeline) {
    $errors = $Pipeline.Streams.Error
    if ($errors.Count -eq 0) { return }
    foreach ($record in $errors.ReadAll()) {
        [Console]::Error.WriteLine((Format-LogText $record))
    }
}

# Runs a pipeline in the user's runspace, returning @{ Outputs; Failure } (the output collection,
# or the terminating exception). Meanwhile this thread keeps a read outstanding on the channel, so
# end of file ends the worker even while user code runs, and forwards error records every
# StreamPollMs.
function Invoke-UserPipeline([System.Management.Automation.PowerShell]$Pipeline) {
    $task = $Pipeline.InvokeAsync()
    $waitOn = [System.Threading.Tasks.Task[]]::new(2)
    $waitOn[0] = $task
    while (-not $task.IsCompleted) {
        Start-FrameRead
        $waitOn[1] = $script:ReadTask
        [void][System.Threading.Tasks.Task]::WaitAny($waitOn, $script:StreamPollMs)
        if ($script:ReadTask.IsCompleted) { Complete-FrameRead }
        Write-ErrorStream $Pipeline
    }
    Write-ErrorStream $Pipeline
    $outcome = @{ Outputs = $null; Failure = $null }
    if ($task.IsFaulted -or $task.IsCanceled -or
        $Pipeline.InvocationStateInfo.State -eq [System.Management.Automation.PSInvocationState]::Failed) {
        $taskError = $task.Exception
        $outcome.Failure = $Pipeline.InvocationStateInfo.Reason
        if ($null -eq $outcome.Failure -and $null -ne $taskError) { $outcome.Failure = $taskError.InnerException }
        if ($null -eq $outcome.Failure) {
            $outcome.Failure = [System.InvalidOperationException]::new('the pipeline ended without output or error')
        }
    } else {
        $outcome.Outputs = $task.Result
    }
    return $outcome
}

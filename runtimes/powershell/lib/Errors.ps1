# Lambda's error JSON ({"errorType","errorMessage","stackTrace"}) from PowerShell failures, with
# the conventions of Lambda's PowerShell runtime for what a script throws.

function New-ErrorInfo([string]$Type, [string]$Message, $Frames) {
    $lines = [string[]]@()
    if ($null -ne $Frames) { $lines = [string[]]$Frames }
    return @{ Type = $Type; Message = $Message; Trace = $lines }
}

function ConvertTo-ErrorBody($Info) {
    $frames = [System.Collections.Generic.List[string]]::new()
    foreach ($line in $Info.Trace) { $frames.Add((ConvertTo-JsonString $line)) }
    $json = '{"errorType":' + (ConvertTo-JsonString $Info.Type) +
        ',"errorMessage":' + (ConvertTo-JsonString $Info.Message) +
        ',"stackTrace":[' + ($frames -join ',') + ']}'
    $body = [System.Text.Encoding]::UTF8.GetBytes($json)
    return , $body
}

function New-ErrorReply($Info) {
    return @{ Kind = $script:FrameError; Body = (ConvertTo-ErrorBody $Info) }
}

# ScriptStackTrace is PowerShell's own trace ("at Invoke-Thing, /code/app.ps1: line 12"), the one a
# PowerShell user reads; the .NET trace of the engine underneath would only be noise.
function Get-ScriptStackLines($Record) {
    $lines = [System.Collections.Generic.List[string]]::new()
    if ($null -ne $Record -and -not [string]::IsNullOrEmpty($Record.ScriptStackTrace)) {
        foreach ($line in ($Record.ScriptStackTrace -split '\r?\n')) {
            if ($line.Trim().Length -gt 0) { $lines.Add($line) }
        }
    }
    $array = $lines.ToArray()
    return , $array
}

function Get-ErrorRecordOf($Exception) {
    if ($Exception -is [System.Management.Automation.IContainsErrorRecord]) { return $Exception.ErrorRecord }
    return $null
}

# What a handler's failure reports, as Lambda's PowerShell runtime does it:
#   throw @{ Exception = 'AccountNotFound'; Message = 'no such account' }  -> errorType AccountNotFound
#   throw 'AccountNotFound' (a bare error code: a letter, then letters or digits) -> errorType AccountNotFound
#   throw 'any other text'                                   -> RuntimeException, the text as message
#   anything else -> the type name of the exception PowerShell wraps (a .NET method's
#   FormatException rather than the MethodInvocationException around it).
function Get-ExceptionInfo($Exception) {
    $record = Get-ErrorRecordOf $Exception
    $stack = Get-ScriptStackLines $record
    $thrown = $Exception -is [System.Management.Automation.RuntimeException] -and $Exception.WasThrownFromThrowStatement
    if ($thrown -and $null -ne $record) {
        $target = $record.TargetObject
        if ($target -is [System.Collections.IDictionary] -and $target.Contains('Exception')) {
            $type = [string]$target['Exception']
            $message = $type
            if ($target.Contains('Message')) { $message = [string]$target['Message'] }
            return New-ErrorInfo $type $message $stack
        }
        if ($target -is [string] -and $target -cmatch '^[A-Za-z][A-Za-z0-9]*$') {
            return New-ErrorInfo $target $target $stack
        }
    }
    # The record of a cmdlet's error made terminating (ActionPreferenceStopException) holds the
    # cmdlet's own exception; a record PowerShell made up for a bare RuntimeException holds only a
    # ParentContainsErrorRecordException pointing back at it.
    $actual = $Exception
    if ($Exception -is [System.Management.Automation.RuntimeException]) {
        if ($null -ne $Exception.InnerException) {
            $actual = $Exception.InnerException
        } elseif ($null -ne $record -and $null -ne $record.Exception -and
            $record.Exception -isnot [System.Management.Automation.ParentContainsErrorRecordException]) {
            $actual = $record.Exception
        }
    }
    $typeName = $actual.GetType().Name
    return New-ErrorInfo $typeName $actual.Message $stack
}

# A failure while loading modules (#Requires -Modules, Import-Module -ErrorAction Stop, a
# #Requires the engine cannot satisfy) rather than an error of the user's own init code.
function Test-ModuleLoadFailure($Exception) {
    $current = $Exception
    while ($null -ne $current) {
        if ($current -is [System.Management.Automation.ScriptRequiresException]) { return $true }
        $record = Get-ErrorRecordOf $current
        if ($null -ne $record -and [string]$record.FullyQualifiedErrorId -like '*,Microsoft.PowerShell.Commands.ImportModuleCommand') {
            return $true
        }
        $current = $current.InnerException
    }
    return $false
}

function ConvertTo-InitErrorInfo([string]$Script, $Exception) {
    $info = Get-ExceptionInfo $Exception
    if (Test-ModuleLoadFailure $Exception) {
        return New-ErrorInfo 'Runtime.ImportModuleError' "Cannot load a module that $Script needs: $($info.Message)" $info.Trace
    }
    return New-ErrorInfo 'Runtime.InitError' "$($info.Type): $($info.Message)" $info.Trace
}

# The parser reports a missing 'using module' as a parse error too; that one is an import problem.
function ConvertFrom-ParseErrors([string]$Script, [string]$Path, $ParseErrors) {
    $moduleIds = @('ModuleNotFoundDuringParse', 'MultipleModuleEntriesFoundDuringParse')
    $lines = [System.Collections.Generic.List[string]]::new()
    $firstSyntax = $null
    $firstModule = $null
    foreach ($parseError in $ParseErrors) {
        $extent = $parseError.Extent
        $lines.Add(('{0}:{1}:{2}: {3}' -f $Path, $extent.StartLineNumber, $extent.StartColumnNumber, $parseError.Message))
        if ($moduleIds -contains $parseError.ErrorId) {
            if ($null -eq $firstModule) { $firstModule = $parseError }
        } elseif ($null -eq $firstSyntax) {
            $firstSyntax = $parseError
        }
    }
    if ($null -eq $firstSyntax) {
        return New-ErrorInfo 'Runtime.ImportModuleError' "Cannot load a module that $Script names in 'using module': $($firstModule.Message)" $lines.ToArray()
    }
    $more = ''
    if ($ParseErrors.Count -gt 1) { $more = " ($($ParseErrors.Count - 1) more in stackTrace)" }
    $message = 'Syntax error in {0} at line {1}, column {2}: {3}{4}' -f $Script,
        $firstSyntax.Extent.StartLineNumber, $firstSyntax.Extent.StartColumnNumber, $firstSyntax.Message, $more
    return New-ErrorInfo 'Runtime.UserCodeSyntaxError' $message $lines.ToArray()
}

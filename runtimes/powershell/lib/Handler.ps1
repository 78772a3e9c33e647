# Loading the handler at INIT and calling it per INVOKE, as Lambda's PowerShell runtime does:
#   script.ps1                  the script runs on every invocation (nothing of it runs at INIT)
#   script.ps1::Function-Name   the script is dot-sourced once at INIT, the function runs per call
# Both see $LambdaInput (the event, parsed by ConvertFrom-Json) and $LambdaContext; a handler that
# declares parameters gets them as -LambdaInput/-LambdaContext, or positionally otherwise. The last
# object the handler outputs is the result: a string as it is, anything else through ConvertTo-Json.
# An ERROR is what ends the handler: a throw, or an error made terminating (-ErrorAction Stop,
# $ErrorActionPreference = 'Stop'). Other errors, a failed .NET call included, end only their
# statement, as in any PowerShell script, and are log lines on stderr.

$script:HandlerHelp = "expected 'script.ps1' or 'script.ps1::Function-Name' (a .ps1 path relative to the code directory, optionally followed by :: and a function the script defines; Module::Name::Function handlers are not supported)"

# Runs in the user's runspace (in a local scope, so nothing lingers there): the handler command
# and the names of the parameters it declares, the common ones left out.
$script:FindCommandScript = @'
param([string]$Name, [System.Management.Automation.CommandTypes]$Type)
$command = Get-Command -Name $Name -CommandType $Type -ErrorAction Ignore | Select-Object -First 1
if ($null -ne $command) {
    $names = [System.Collections.Generic.List[string]]::new()
    try {
        foreach ($key in $command.Parameters.Keys) {
            if (-not [System.Management.Automation.Cmdlet]::CommonParameters.Contains($key) -and
                -not [System.Management.Automation.Cmdlet]::OptionalCommonParameters.Contains($key)) { $names.Add($key) }
        }
    } catch { }
    [pscustomobject]@{ Command = $command; Parameters = $names.ToArray() }
}
'@

# Script blocks of $LambdaContext's members, created in the user's runspace because a script block
# runs in the runspace it was made in, and these are called from user code.
$script:ContextMemberScript = @'
{ [long]($this.DeadlineMs - [DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds()) }
{ [TimeSpan]::FromMilliseconds([double]($this.DeadlineMs - [DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds())) }
{ param($Message) [Console]::Out.Write([string]$Message) }
{ param($Message) [Console]::Out.WriteLine([string]$Message) }
'@

# @{ Script; Function } ($null Function for a script handler), or $null when malformed.
function Split-HandlerName([string]$Handler) {
    if (-not ($Handler -match '^(?<script>[^:]+\.ps1)(?:::(?<function>[A-Za-z_][A-Za-z0-9_-]*))?$')) { return $null }
    $scriptPart = $Matches['script']
    $functionPart = $Matches['function']
    if ([System.IO.Path]::IsPathRooted($scriptPart) -or ($scriptPart -split '[\\/]') -contains '..') { return $null }
    return @{ Script = $scriptPart; Function = $functionPart }
}

function Get-MissingScriptMessage([string]$Script, [string]$Path) {
    $directory = [System.IO.Path]::GetDirectoryName($Path)
    if (-not [System.IO.Directory]::Exists($directory)) {
        return "Cannot find the handler script '$Script': directory '$directory' does not exist"
    }
    $names = [System.Collections.Generic.List[string]]::new()
    foreach ($file in [System.IO.Directory]::GetFiles($directory, '*.ps1')) { $names.Add([System.IO.Path]::GetFileName($file)) }
    $names.Sort([System.StringComparer]::Ordinal)
    $found = 'it has no .ps1 files'
    if ($names.Count -gt 0) { $found = 'it has: ' + (($names | Select-Object -First 20) -join ', ') }
    return "Cannot find the handler script '$Script': no file '$Path' ($directory; $found)"
}

function Get-HandlerNotFoundMessage([string]$Script, [string]$Function, $Ast) {
    $names = [System.Collections.Generic.List[string]]::new()
    $definitions = $Ast.FindAll({ param($node) $node -is [System.Management.Automation.Language.FunctionDefinitionAst] }, $false)
    foreach ($definition in $definitions) { $names.Add($definition.Name) }
    $found = 'it defines no functions'
    if ($names.Count -gt 0) { $found = 'it defines: ' + (($names | Select-Object -First 20) -join ', ') }
    return "Function '$Function' not found after loading $Script ($found)"
}

# Names of functions are case-insensitive in PowerShell, like the parameter names compared here.
function Set-HandlerBinding($Found) {
    # The CommandInfo itself, so that AddCommand binds it rather than looking a name up per call.
    $script:HandlerCommand = [System.Management.Automation.CommandInfo]$Found.Command.psobject.BaseObject
    $declared = [string[]]$Found.Parameters
    $script:BindInput = $declared -contains 'LambdaInput'
    $script:BindContext = $declared -contains 'LambdaContext'
    # param($event, $context) and the like: Lambda passes the two positionally. A handler that
    # declares no parameter reads the variables, and passing it arguments could fail its binding.
    $script:PositionalCount = 0
    if (-not $script:BindInput -and -not $script:BindContext) {
        $script:PositionalCount = [System.Math]::Min(2, $declared.Count)
    }
}

function Find-UserCommand([string]$Name, [System.Management.Automation.CommandTypes]$Type) {
    $pipeline = New-UserPowerShell
    [void]$pipeline.AddScript($script:FindCommandScript, $true).AddParameter('Name', $Name).AddParameter('Type', $Type)
    try { $outcome = Invoke-UserPipeline $pipeline } finally { $pipeline.Dispose() }
    if ($null -ne $outcome.Failure -or $outcome.Outputs.Count -eq 0) { return $null }
    return $outcome.Outputs[0]
}

function Initialize-ContextMembers {
    $pipeline = New-UserPowerShell
    [void]$pipeline.AddScript($script:ContextMemberScript, $true)
    try { $outcome = Invoke-UserPipeline $pipeline } finally { $pipeline.Dispose() }
    if ($null -ne $outcome.Failure) { throw $outcome.Failure }
    $blocks = $outcome.Outputs
    $script:RemainingMillisScript = $blocks[0].psobject.BaseObject
    $script:RemainingTimeScript = $blocks[1].psobject.BaseObject
    # ILambdaContext.Logger of Lambda's .NET/PowerShell runtime: Log and LogLine write to stdout.
    $script:Logger = [pscustomobject]@{}
    $script:Logger.PSObject.Methods.Add([System.Management.Automation.PSScriptMethod]::new('Log', $blocks[2].psobject.BaseObject))
    $script:Logger.PSObject.Methods.Add([System.Management.Automation.PSScriptMethod]::new('LogLine', $blocks[3].psobject.BaseObject))
}

# The INIT field, or the environment variable the daemon also set, when INIT lacks it.
function Get-InitValue($Value, [string]$Variable) {
    if ($null -ne $Value -and ([string]$Value).Length -gt 0) { return [string]$Value }
    return [Environment]::GetEnvironmentVariable($Variable)
}

function Set-FunctionEnvironment($Init, [string]$CodeDir) {
    if ($null -ne $Init.environment) {
        foreach ($property in $Init.environment.PSObject.Properties) {
            $value = [string]$property.Value
            # .NET deletes a variable set to '', and the process already has what the daemon passed.
            if ($value.Length -gt 0 -and [Environment]::GetEnvironmentVariable($property.Name) -cne $value) {
                [Environment]::SetEnvironmentVariable($property.Name, $value)
            }
        }
    }
    # Modules shipped with the function, where Lambda's PowerShell runtime looks for them.
    $paths = [System.Collections.Generic.List[string]]::new()
    foreach ($folder in @('modules', 'Modules')) {
        $candidate = [System.IO.Path]::Combine($CodeDir, $folder)
        if ([System.IO.Directory]::Exists($candidate) -and -not $paths.Contains($candidate)) { $paths.Add($candidate) }
    }
    if ($paths.Count -gt 0) {
        $paths.Add([string]$env:PSModulePath)
        $env:PSModulePath = $paths -join [System.IO.Path]::PathSeparator
    }
    $name = Get-InitValue $Init.function_name 'AWS_LAMBDA_FUNCTION_NAME'
    $region = Get-InitValue $null 'AWS_REGION'
    if ([string]::IsNullOrEmpty($region)) { $region = 'local' }
    $script:FunctionConfig = @{
        Name = $name
        Version = Get-InitValue $Init.function_version 'AWS_LAMBDA_FUNCTION_VERSION'
        MemoryMb = [int](Get-InitValue $Init.memory_mb 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE')
        LogGroup = Get-InitValue $Init.log_group_name 'AWS_LAMBDA_LOG_GROUP_NAME'
        LogStream = Get-InitValue $Init.log_stream_name 'AWS_LAMBDA_LOG_STREAM_NAME'
        Arn = "arn:aws:lambda:${region}:000000000000:function:$name"
    }
    if (-not [string]::IsNullOrEmpty([string]$Init.invoked_function_arn)) {
        $script:FunctionConfig.Arn = [string]$Init.invoked_function_arn  # the daemon's region and account
    }
}

function Initialize-UserRunspace([string]$CodeDir) {
    $proxy = $script:UserRunspace.SessionStateProxy
    # Progress bars have no place in a log; Write-Information is logging, so it is shown.
    $proxy.SetVariable('ProgressPreference', [System.Management.Automation.ActionPreference]::SilentlyContinue)
    $proxy.SetVariable('InformationPreference', [System.Management.Automation.ActionPreference]::Continue)
    if ($script:Specialised) {
        # The runspace's location is its own, taken from the process's working directory as it
        # opened: a stem cell's opened in /, and SPECIALISE has moved the process since.
        [void]$proxy.Path.SetLocation([System.Management.Automation.WildcardPattern]::Escape([Environment]::CurrentDirectory))
    } elseif ([Environment]::CurrentDirectory -cne $CodeDir) {
        # Only for a worker started elsewhere: the daemon starts it in CodeDir.
        [Environment]::CurrentDirectory = $CodeDir
        [void]$proxy.Path.SetLocation([System.Management.Automation.WildcardPattern]::Escape($CodeDir))
    }
}

# The #Requires -Modules of the script, imported now: a missing module is an INIT failure, and the
# script handler, which runs only per invocation, finds them loaded.
function Import-RequiredModules($Ast) {
    $requirements = $Ast.ScriptRequirements
    if ($null -eq $requirements -or $requirements.RequiredModules.Count -eq 0) { return $null }
    $pipeline = New-UserPowerShell
    $modules = [Microsoft.PowerShell.Commands.ModuleSpecification[]]@($requirements.RequiredModules)
    [void]$pipeline.AddCommand('Import-Module')
    [void]$pipeline.AddParameter('FullyQualifiedName', $modules)
    [void]$pipeline.AddParameter('Global')
    [void]$pipeline.AddParameter('ErrorAction', 'Stop')
    try { $outcome = Invoke-UserPipeline $pipeline } finally { $pipeline.Dispose() }
    return $outcome.Failure
}

# INIT: $null when the handler is ready, else the error info for INIT_ERROR.
function Initialize-Function([string]$InitJson) {
    try {
        $init = ConvertFrom-Json -InputObject $InitJson
    } catch {
        Stop-Worker "INIT is not JSON: $($_.Exception.Message)"
    }
    $handler = [string]$init.handler
    $codeDir = [string]$init.code_dir
    if ($codeDir.Length -eq 0) { $codeDir = [Environment]::CurrentDirectory }
    Set-FunctionEnvironment $init $codeDir

    $spec = Split-HandlerName $handler
    if ($null -eq $spec) {
        return New-ErrorInfo 'Runtime.MalformedHandlerName' "Bad handler '$handler': $($script:HandlerHelp)"
    }
    $scriptPath = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($codeDir, $spec.Script))
    if (-not [System.IO.File]::Exists($scriptPath)) {
        return New-ErrorInfo 'Runtime.ImportModuleError' (Get-MissingScriptMessage $spec.Script $scriptPath)
    }
    $tokens = $null
    $parseErrors = $null
    try {
        $ast = [System.Management.Automation.Language.Parser]::ParseFile($scriptPath, [ref]$tokens, [ref]$parseErrors)
    } catch {
        return New-ErrorInfo 'Runtime.ImportModuleError' "Cannot read the handler script '$scriptPath': $($_.Exception.GetBaseException().Message)"
    }
    if ($null -ne $parseErrors -and $parseErrors.Count -gt 0) {
        return ConvertFrom-ParseErrors $spec.Script $scriptPath $parseErrors
    }

    $openError = Wait-UserRunspace
    if ($null -ne $openError) {
        return New-ErrorInfo 'Runtime.Unknown' "The PowerShell runspace for the function could not open: $openError"
    }
    Initialize-UserRunspace $codeDir

    $failure = Import-RequiredModules $ast
    if ($null -ne $failure) {
        $info = Get-ExceptionInfo $failure
        return New-ErrorInfo 'Runtime.ImportModuleError' "Cannot load the modules that $($spec.Script) requires (#Requires -Modules): $($info.Message)" $info.Trace
    }

    if ($null -eq $spec.Function) {
        $found = Find-UserCommand $scriptPath ([System.Management.Automation.CommandTypes]::ExternalScript)
        if ($null -eq $found) {
            return New-ErrorInfo 'Runtime.ImportModuleError' "Cannot load the handler script '$scriptPath' as a PowerShell script"
        }
    } else {
        # Dot-sourced (useLocalScope $false) into the global scope: its functions and variables
        # are there for every invocation, as the init code of a Lambda function should be.
        $pipeline = New-UserPowerShell
        [void]$pipeline.AddCommand($scriptPath, $false)
        try { $outcome = Invoke-UserPipeline $pipeline } finally { $pipeline.Dispose() }
        if ($null -ne $outcome.Outputs) { Write-OutputLog $outcome.Outputs $outcome.Outputs.Count }
        if ($null -ne $outcome.Failure) { return ConvertTo-InitErrorInfo $spec.Script $outcome.Failure }
        $found = Find-UserCommand $spec.Function ([System.Management.Automation.CommandTypes]'Function, Filter')
        if ($null -eq $found) {
            return New-ErrorInfo 'Runtime.HandlerNotFound' (Get-HandlerNotFoundMessage $spec.Script $spec.Function $ast)
        }
    }
    Set-HandlerBinding $found
    Initialize-ContextMembers
    return $null
}

# $LambdaContext with the members of Lambda's PowerShell context (Amazon.Lambda.Core.ILambdaContext
# plus GetRemainingTimeInMillis()), remaining time counted down to the INVOKE deadline.
function New-LambdaContext([string]$RequestId, [long]$DeadlineMs, $Invoked) {
    $arn = $script:FunctionConfig.Arn
    if (-not [string]::IsNullOrEmpty($Invoked.Arn)) { $arn = $Invoked.Arn }
    $context = [pscustomobject]@{
        AwsRequestId = $RequestId
        FunctionName = $script:FunctionConfig.Name
        FunctionVersion = $script:FunctionConfig.Version
        InvokedFunctionArn = $arn
        MemoryLimitInMB = $script:FunctionConfig.MemoryMb
        LogGroupName = $script:FunctionConfig.LogGroup
        LogStreamName = $script:FunctionConfig.LogStream
        Identity = $null
        ClientContext = $Invoked.ClientContext
        Logger = $script:Logger
        DeadlineMs = $DeadlineMs
    }
    $context.PSObject.Methods.Add([System.Management.Automation.PSScriptMethod]::new('GetRemainingTimeInMillis', $script:RemainingMillisScript))
    $context.PSObject.Properties.Add([System.Management.Automation.PSScriptProperty]::new('RemainingTime', $script:RemainingTimeScript))
    return $context
}

# RESULT from the handler's output: earlier objects are log lines, the last one is the result.
function ConvertTo-ResultReply($Outputs) {
    $count = 0
    if ($null -ne $Outputs) { $count = $Outputs.Count }
    if ($count -gt 1) { Write-OutputLog $Outputs ($count - 1) }
    $last = $null
    if ($count -gt 0) { $last = $Outputs[$count - 1] }
    if ($null -eq $last) {
        $json = 'null'
    } elseif ($last -is [string]) {
        $json = [string]$last
    } else {
        try {
            $json = ConvertTo-Json -InputObject $last -Depth 100 -Compress
        } catch {
            $typeName = $last.psobject.BaseObject.GetType().FullName
            return New-ErrorReply (New-ErrorInfo 'Runtime.MarshalError' "Unable to marshal the handler's result ($typeName) to JSON: $($_.Exception.Message)")
        }
        if ($null -eq $json) { $json = 'null' }
    }
    $body = [System.Text.Encoding]::UTF8.GetBytes($json)
    # id_len, up to 255 bytes of request id and the kind byte must fit in the frame too.
    if ($body.Length + 257 -gt $script:MaxFrame) {
        return New-ErrorReply (New-ErrorInfo 'Function.ResponseSizeTooLarge' "The response of $($body.Length) bytes exceeds the worker protocol's frame limit of $($script:MaxFrame) bytes")
    }
    return @{ Kind = $script:FrameResult; Body = $body }
}

# A JSON object's members as Dictionary[string, string] (ILambdaContext's IDictionary<string,
# string>): strings as they are, other values as their JSON text. Throws when it is not an object.
function ConvertTo-StringDictionary($Value, [string]$What) {
    if ($null -eq $Value) { return $null }
    if ($Value -isnot [System.Collections.IDictionary]) { throw "client_context.$What is not a JSON object" }
    $result = [System.Collections.Generic.Dictionary[string, string]]::new()
    foreach ($key in $Value.Keys) {
        $item = $Value[$key]
        if ($null -eq $item -or $item -is [string]) { $result[[string]$key] = $item }
        else { $result[[string]$key] = ConvertTo-Json -InputObject $item -Depth 100 -Compress }
    }
    return $result
}

function ConvertTo-FieldText($Value) {
    if ($null -eq $Value -or $Value -is [string]) { return $Value }
    return ConvertTo-Json -InputObject $Value -Depth 100 -Compress
}

# INVOKE's context (protocol version 2) as @{ ClientContext; Arn }: ClientContext with the members
# of Amazon.Lambda.Core's IClientContext (Client, Custom, Environment), or $null. Throws a message
# saying what is wrong with it.
function ConvertFrom-InvokeContext([string]$Json) {
    $invoked = @{ ClientContext = $null; Arn = $null }
    if ([string]::IsNullOrEmpty($Json)) { return $invoked }
    try {
        $context = ConvertFrom-Json -InputObject $Json -AsHashtable -NoEnumerate
    } catch {
        throw "it is not JSON: $($_.Exception.Message)"
    }
    if ($context -isnot [System.Collections.IDictionary]) { throw 'it is not a JSON object' }
    $arn = $context['invoked_function_arn']
    if ($null -ne $arn -and $arn -isnot [string]) { throw 'invoked_function_arn is not a string' }
    $invoked.Arn = $arn
    $values = $context['client_context']
    if ($null -eq $values) { return $invoked }
    if ($values -isnot [System.Collections.IDictionary]) { throw 'client_context is not a JSON object' }
    $client = $values['client']
    if ($null -ne $client -and $client -isnot [System.Collections.IDictionary]) {
        throw 'client_context.client is not a JSON object'
    }
    $application = $null
    if ($null -ne $client) {
        $application = [pscustomobject]@{
            AppPackageName = ConvertTo-FieldText $client['app_package_name']
            AppTitle = ConvertTo-FieldText $client['app_title']
            AppVersionCode = ConvertTo-FieldText $client['app_version_code']
            AppVersionName = ConvertTo-FieldText $client['app_version_name']
            InstallationId = ConvertTo-FieldText $client['installation_id']
        }
    }
    $invoked.ClientContext = [pscustomobject]@{
        Client = $application
        Custom = ConvertTo-StringDictionary $values['custom'] 'custom'
        Environment = ConvertTo-StringDictionary $values['env'] 'env'
    }
    return $invoked
}

# INVOKE: @{ Kind; Body } of the RESULT or ERROR frame to send.
function Invoke-Function([string]$RequestId, [long]$DeadlineMs, [string]$Payload, [string]$Context) {
    try {
        $invoked = ConvertFrom-InvokeContext $Context
    } catch {
        return New-ErrorReply (New-ErrorInfo 'Runtime.InvalidContext' "Unable to parse the invocation's context: $($_.Exception.Message)")
    }
    $lambdaInput = $null
    if (-not [string]::IsNullOrWhiteSpace($Payload)) {
        try {
            # -NoEnumerate: a JSON array stays one array, [1] included, as ConvertTo-Json will need.
            $lambdaInput = ConvertFrom-Json -InputObject $Payload -NoEnumerate
        } catch {
            return New-ErrorReply (New-ErrorInfo 'Runtime.UnmarshalError' "Unable to unmarshal the event as JSON: $($_.Exception.Message)")
        }
    }
    $context = New-LambdaContext $RequestId $DeadlineMs $invoked
    $proxy = $script:UserRunspace.SessionStateProxy
    $proxy.SetVariable('LambdaInput', $lambdaInput)
    $proxy.SetVariable('LambdaContext', $context)

    $pipeline = New-UserPowerShell
    [void]$pipeline.AddCommand($script:HandlerCommand)
    if ($script:BindInput) { [void]$pipeline.AddParameter('LambdaInput', $lambdaInput) }
    if ($script:BindContext) { [void]$pipeline.AddParameter('LambdaContext', $context) }
    if ($script:PositionalCount -ge 1) { [void]$pipeline.AddArgument($lambdaInput) }
    if ($script:PositionalCount -ge 2) { [void]$pipeline.AddArgument($context) }
    try { $outcome = Invoke-UserPipeline $pipeline } finally { $pipeline.Dispose() }
    if ($null -ne $outcome.Failure) { return New-ErrorReply (Get-ExceptionInfo $outcome.Failure) }
    return ConvertTo-ResultReply $outcome.Outputs
}

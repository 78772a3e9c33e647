# A stem cell becoming a function's worker (protos/worker-protocol.md, "Stem cells"): SPECIALISE's
# steps 1-3, identity, environment and working directory, before anything of the function loads;
# Initialize-Function then does INIT's work from the new environment. The libc calls are the stubs
# of Native.ps1, emitted when the cell started.

# Set once SPECIALISE has succeeded: Initialize-UserRunspace moves the runspace along.
$script:Specialised = $false
# SPECIALISE's INIT object alone, as JSON, for Initialize-Function: its ConvertFrom-Json refuses
# keys that differ only in case, which process_environment may well have (Path and PATH).
$script:SpecialisedInitJson = $null

# $null when the cell is the function's now, else the error info for INIT_ERROR
# (Runtime.SpecialiseError, naming the step that failed).
function Invoke-Specialise([string]$SpecJson) {
    $step = 'reading SPECIALISE'
    try {
        # -AsHashtable: variable names that differ only in case stay apart, as they are on Linux.
        $spec = ConvertFrom-Json -InputObject $SpecJson -AsHashtable
        if ($spec -isnot [System.Collections.IDictionary]) { throw 'it is not a JSON object' }
        $step = 'identity'
        if ($null -ne $spec['identity']) { $null = Set-CellIdentity $spec['identity'] }
        $step = 'environment'
        $null = Set-CellEnvironment $spec['process_environment']
        $step = 'working directory'
        $null = Set-CellDirectory $spec['cwd']
        $step = 'passing INIT on'
        foreach ($key in @('identity', 'process_environment', 'cwd')) { $spec.Remove($key) }
        $script:SpecialisedInitJson = ConvertTo-Json -InputObject $spec -Depth 10 -Compress
    } catch {
        return New-ErrorInfo 'Runtime.SpecialiseError' "Cannot specialise the stem cell (step: $step): $($_.Exception.Message)"
    }
    $script:Specialised = $true
    return $null
}

# (uid_t)-1 means "leave unchanged" to setresuid, so it is refused rather than passed on.
function ConvertTo-CellId($Value, [string]$Name) {
    if (($Value -is [int] -or $Value -is [long]) -and $Value -ge 0 -and $Value -lt [uint32]::MaxValue) {
        return [uint32]$Value
    }
    throw "identity.$Name is not a uid/gid number"
}

# No supplementary groups, then real, effective and saved gid, then uid (once the uid is not 0 the
# gid can no longer change). glibc's wrappers change every thread of the process, the runspace's
# and .NET's own included; then getuid and friends must agree.
function Set-CellIdentity($Identity) {
    if ($Identity -isnot [System.Collections.IDictionary]) { throw 'identity is not a JSON object' }
    $uid = ConvertTo-CellId $Identity['uid'] 'uid'
    $gid = ConvertTo-CellId $Identity['gid'] 'gid'
    $native = Get-NativeType
    if ($native::setgroups([UIntPtr]::Zero, [IntPtr]::Zero) -ne 0) { throw "setgroups(0, NULL) failed: $(Get-NativeError)" }
    if ($native::setresgid($gid, $gid, $gid) -ne 0) { throw "setresgid($gid) failed: $(Get-NativeError)" }
    if ($native::setresuid($uid, $uid, $uid) -ne 0) { throw "setresuid($uid) failed: $(Get-NativeError)" }
    $now = @($native::getuid(), $native::geteuid(), $native::getgid(), $native::getegid())
    if ($now[0] -ne $uid -or $now[1] -ne $uid -or $now[2] -ne $gid -or $now[3] -ne $gid) {
        throw "uid $uid gid $gid did not take: getuid, geteuid, getgid, getegid say $($now -join ', ')"
    }
    $groups = $native::getgroups(0, [IntPtr]::Zero)
    if ($groups -lt 0) { throw "getgroups failed: $(Get-NativeError)" }
    if ($groups -ne 0) { throw "getgroups still lists $groups supplementary groups" }
}

# Both copies of the environment: .NET's own (what $env:, [Environment] and the programs a handler
# starts see) and the C library's environ (native code, the time zone), then the time-zone caches.
# .NET deletes a variable set to '', so an empty variable exists only in environ.
function Set-CellEnvironment($Variables) {
    if ($Variables -isnot [System.Collections.IDictionary]) { throw 'process_environment is not a JSON object' }
    $wanted = [System.Collections.Generic.Dictionary[string, string]]::new([System.StringComparer]::Ordinal)
    foreach ($name in $Variables.Keys) {
        $value = $Variables[$name]
        if ($value -isnot [string]) { throw "process_environment.$name is not a string" }
        $wanted[[string]$name] = $value
    }
    # pwsh builds PSModulePath as it starts (its own module folders around the value it was given,
    # a start-up variable in runtime.toml, so the function's): a spawned worker has what it built.
    $modulePath = [Environment]::GetEnvironmentVariable('PSModulePath')
    if ($null -ne $modulePath) { $wanted['PSModulePath'] = $modulePath }

    foreach ($name in @([Environment]::GetEnvironmentVariables().Keys)) {
        if (-not $wanted.ContainsKey([string]$name)) { [Environment]::SetEnvironmentVariable([string]$name, $null) }
    }
    foreach ($pair in $wanted.GetEnumerator()) {
        if ([Environment]::GetEnvironmentVariable($pair.Key) -cne $pair.Value) {
            [Environment]::SetEnvironmentVariable($pair.Key, $pair.Value)
        }
    }

    $native = Get-NativeType
    if ($native::clearenv() -ne 0) { throw "clearenv failed: $(Get-NativeError)" }
    foreach ($pair in $wanted.GetEnumerator()) {
        if ($native::setenv($pair.Key, $pair.Value, 1) -ne 0) { throw "setenv($($pair.Key)) failed: $(Get-NativeError)" }
    }
    $native::tzset()
    # TimeZoneInfo.Local and the older TimeZone.CurrentTimeZone are each computed once, from TZ;
    # CultureInfo's ClearCachedData resets both (a default culture it drops comes back the same:
    # the locale is a start-up variable, so the cell already has the function's).
    [System.TimeZoneInfo]::ClearCachedData()
    [System.Globalization.CultureInfo]::CurrentCulture.ClearCachedData()
}

function Set-CellDirectory($Path) {
    if ($Path -isnot [string] -or $Path.Length -eq 0) { throw 'cwd is not a path' }
    try {
        [System.IO.Directory]::SetCurrentDirectory($Path)
    } catch {
        throw "chdir($Path) failed: $($_.Exception.GetBaseException().Message)"
    }
}

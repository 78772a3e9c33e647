# The libc calls .NET has no spelling for, as P/Invoke stubs emitted at run time with
# Reflection.Emit: no C# compiler is loaded (Add-Type would bring Roslyn into every worker), and
# emitting costs a few milliseconds at start. Binding to libc happens at each stub's first call.
#
#   fcntl                                   the channel's close-on-exec (Channel.ps1)
#   setgroups, setresgid, setresuid,        a stem cell taking its function's identity and
#   getuid, geteuid, getgid, getegid,       environment at SPECIALISE (Specialise.ps1)
#   getgroups, clearenv, setenv, tzset,
#   strerror

$script:NativeType = $null

# size_t is UIntPtr; uid_t and gid_t are uint32.
$script:NativeSignatures = @(
    @{ Name = 'fcntl'; Returns = [int]; Parameters = [type[]]@([int], [int], [int]) }
    @{ Name = 'setgroups'; Returns = [int]; Parameters = [type[]]@([UIntPtr], [IntPtr]) }
    @{ Name = 'setresgid'; Returns = [int]; Parameters = [type[]]@([uint32], [uint32], [uint32]) }
    @{ Name = 'setresuid'; Returns = [int]; Parameters = [type[]]@([uint32], [uint32], [uint32]) }
    @{ Name = 'getuid'; Returns = [uint32]; Parameters = [type[]]@() }
    @{ Name = 'geteuid'; Returns = [uint32]; Parameters = [type[]]@() }
    @{ Name = 'getgid'; Returns = [uint32]; Parameters = [type[]]@() }
    @{ Name = 'getegid'; Returns = [uint32]; Parameters = [type[]]@() }
    @{ Name = 'getgroups'; Returns = [int]; Parameters = [type[]]@([int], [IntPtr]) }
    @{ Name = 'clearenv'; Returns = [int]; Parameters = [type[]]@() }
    @{ Name = 'setenv'; Returns = [int]; Parameters = [type[]]@([string], [string], [int]) }
    @{ Name = 'tzset'; Returns = [void]; Parameters = [type[]]@() }
    @{ Name = 'strerror'; Returns = [IntPtr]; Parameters = [type[]]@([int]) }
)

# The emitted type, its static methods named as in libc; made once. Throws when it cannot be made.
function Get-NativeType {
    if ($null -ne $script:NativeType) { return $script:NativeType }
    $assembly = [System.Reflection.Emit.AssemblyBuilder]::DefineDynamicAssembly(
        [System.Reflection.AssemblyName]::new('FnhostPosix'), [System.Reflection.Emit.AssemblyBuilderAccess]::Run)
    $module = $assembly.DefineDynamicModule('FnhostPosix')
    $builder = $module.DefineType('FnhostPosix.Native', [System.Reflection.TypeAttributes]'Public, Abstract, Sealed')
    foreach ($signature in $script:NativeSignatures) {
        # CharSet Ansi: strings go to libc as UTF-8 (what Ansi means on Unix).
        $method = $builder.DefinePInvokeMethod($signature.Name, 'libc', $signature.Name,
            [System.Reflection.MethodAttributes]'Public, Static, PinvokeImpl',
            [System.Reflection.CallingConventions]::Standard, $signature.Returns, $signature.Parameters,
            [System.Runtime.InteropServices.CallingConvention]::Cdecl, [System.Runtime.InteropServices.CharSet]::Ansi)
        $method.SetImplementationFlags($method.GetMethodImplementationFlags() -bor [System.Reflection.MethodImplAttributes]::PreserveSig)
    }
    $script:NativeType = $builder.CreateType()
    return $script:NativeType
}

# errno of the libc call just made, as "Operation not permitted (errno 1)". The stubs do not ask
# the marshaller to save errno (DefinePInvokeMethod cannot), so this reads it straight from the
# thread (.NET 6 and later), which nothing between a failing call and this one sets again.
function Get-NativeError {
    try {
        $errno = [System.Runtime.InteropServices.Marshal]::GetLastSystemError()
    } catch {
        return 'errno not available'
    }
    $text = $null
    try {
        $native = Get-NativeType
        $text = [System.Runtime.InteropServices.Marshal]::PtrToStringAnsi($native::strerror($errno))
    } catch { }
    if ([string]::IsNullOrEmpty($text)) { $text = 'error' }
    return "$text (errno $errno)"
}

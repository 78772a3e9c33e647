# Deployed as hello-powershell by `fnhost serve --examples`. A script handler: it runs on every
# invocation with $LambdaInput (the event) and $LambdaContext set; its last output is the result.
$name = 'world'
if ($LambdaInput -is [System.Management.Automation.PSCustomObject] -and $LambdaInput.name) {
    $name = [string]$LambdaInput.name
}
Write-Host "greeting $name"
[ordered]@{
    message = "Hello, $name!"
    runtime = 'powershell'
    request_id = $LambdaContext.AwsRequestId
}

# sfbpatch-template: server/reboot v1
# Restart the server after the installer asked for it (exit code 3010). The restart is
# scheduled 15 seconds ahead so that this result reaches sfbpatch first; sfbpatch then
# waits for the server to come back (facts.last_boot changes).
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'server/reboot'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $result.facts.last_boot = (Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o')
        $ErrorActionPreference = 'Continue'
        shutdown.exe /r /t 15 /d p:2:17 /c 'sfbpatch: restart to complete the Skype for Business Server update'
        $result.exit_code = $LASTEXITCODE
        $result.facts.restart = 'scheduled'
        $result.facts.delay_seconds = 15
        'Restart of {0} scheduled in 15 seconds' -f $Server
    } *>&1 | ForEach-Object { $log.Add($_) }
} catch {
    $result.exit_code = 1
    $log.Add($_)
}
$text = ($log | ForEach-Object {
        if ($_ -is [System.Management.Automation.ErrorRecord]) { 'ERROR: ' + $_.Exception.Message }
        elseif ($_ -is [System.Management.Automation.WarningRecord]) { 'WARNING: ' + $_.Message }
        else { $_ }
    } | Out-String).Trim()
if ($text.Length -gt 4000) { $text = '...' + $text.Substring($text.Length - 4000) }
$result.output = $text
$json = ConvertTo-Json -InputObject $result -Compress -Depth 5
[regex]::Replace($json, '[^\x20-\x7e]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })

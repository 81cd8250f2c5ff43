# sfbpatch-template: probe/check-admin-role v1
# Probe for check-admin-role: which of the roles the account holds. Never done: the
# check changes nothing and is always run again.
# A probe takes its step's parameters, so that it names the very action it checks.
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
$result = [ordered]@{ template = 'probe/check-admin-role'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
        $roles = @($identity.Groups.Translate([Security.Principal.NTAccount], $false) | Where-Object { $_.Value -match '\\(CsAdministrator|RTCUniversalServerAdmins)$' } | ForEach-Object { $_.Value })
        $result.facts.account = $identity.Name
        $result.facts.roles = $roles
        $result.done = $false
        '{0} holds: {1}' -f $identity.Name, ($roles -join ', ')
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

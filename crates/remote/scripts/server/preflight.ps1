# sfbpatch-template: server/preflight v1
# Read, before any outage and without changing anything, what the machine runs: the Skype
# for Business services present (Get-CsWindowsService, or by display name where the
# Management Shell is missing), IIS (W3SVC), the Management Shell module, a SQL Server
# instance, the installed build (Get-CsServerPatchVersion) and whether a restart is pending.
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
$result = [ordered]@{ template = 'server/preflight'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        # SkypeForBusiness: Skype for Business Server 2015 and 2019; Lync: Lync Server 2013.
        $module = @(Get-Module -ListAvailable -Name SkypeForBusiness, Lync)
        $result.facts.management_shell = $module.Count -gt 0
        if ($result.facts.management_shell) {
            Import-Module -Name $module[0].Name
            $services = @(Get-CsWindowsService)
            $versions = @(Get-CsServerPatchVersion | ForEach-Object { [version]$_.Version })
            $result.facts.build = if ($versions.Count -gt 0) { ($versions | Sort-Object -Descending | Select-Object -First 1).ToString() } else { $null }
        } else {
            $services = @(Get-Service | Where-Object { ($_.DisplayName -like 'Skype for Business Server *') -or ($_.DisplayName -like 'Lync Server *') })
            $result.facts.build = $null
        }
        $result.facts.services = @($services | ForEach-Object { [string]$_.Name })
        $result.facts.services_running = @($services | Where-Object { [string]$_.Status -eq 'Running' }).Count
        $w3svc = Get-Service -Name W3SVC -ErrorAction SilentlyContinue
        $result.facts.w3svc = $null -ne $w3svc
        $result.facts.sql_server = @(Get-Service -Name 'MSSQLSERVER', 'MSSQL$*' -ErrorAction SilentlyContinue).Count -gt 0
        $result.facts.reboot_pending = (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') -or (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') -or ($null -ne (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue))
        $result.facts.in_service = ($result.facts.services_running -eq $result.facts.services.Count) -and (($null -eq $w3svc) -or ([string]$w3svc.Status -eq 'Running'))
        '{0}: {1} Skype for Business service(s), {2} running; W3SVC {3}; Management Shell {4}; SQL Server {5}; build {6}; restart pending: {7}' -f $Server, $result.facts.services.Count, $result.facts.services_running, $(if ($result.facts.w3svc) { 'present' } else { 'absent' }), $(if ($result.facts.management_shell) { 'present' } else { 'absent' }), $(if ($result.facts.sql_server) { 'present' } else { 'absent' }), $(if ($null -ne $result.facts.build) { $result.facts.build } else { 'none' }), $result.facts.reboot_pending
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

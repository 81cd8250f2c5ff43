# sfbpatch-template: server/recover v1
# After a failure inside the outage window: start W3SVC (where IIS is installed) and,
# unless a restart is pending, restart the Skype for Business services so that none keeps
# assemblies loaded before the update; a Front End server of an Enterprise pool of several,
# whose services failover disabled, returns to its pool by Invoke-CsComputerFailBack, which
# enables and starts them. A SQL Server machine without Skype for
# Business components has nothing to bring back. exit_code 0 when the server is back in
# service.
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
$result = [ordered]@{ template = 'server/recover'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $w3svc = Get-Service -Name W3SVC -ErrorAction SilentlyContinue
        if (($null -ne $w3svc) -and ([string]$w3svc.Status -ne 'Running')) { Start-Service -Name W3SVC; 'Started W3SVC' }
        $result.facts.reboot_pending = (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') -or ($null -ne (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue))
        $module = @(Get-Module -ListAvailable -Name SkypeForBusiness, Lync)
        if ($module.Count -eq 0) {
            $result.facts.services = @()
            $result.facts.w3svc = if ($null -eq $w3svc) { 'not-installed' } else { ([string](Get-Service -Name W3SVC).Status).ToLowerInvariant() }
            '{0} has no Skype for Business components: nothing to bring back' -f $Server
            return
        }
        Import-Module -Name $module[0].Name
        # A Front End server of a pool of several is taken out by failover, which stops and
        # disables its services: failback enables and starts them and returns it to the pool.
        # A SQL Server machine with the Management Shell is no computer of a pool: it has no
        # services to bring back.
        $csComputer = Get-CsComputer -Identity $Server -ErrorAction SilentlyContinue
        $computerPool = if ($null -ne $csComputer) { [string]$csComputer.Pool } else { '' }
        $frontEnds = if ($computerPool) { @((Get-CsPool -Identity $computerPool).Computers).Count } else { 0 }
        if ($null -eq $csComputer) {
            '{0} runs no Skype for Business services: nothing to bring back' -f $Server
        } elseif ($result.facts.reboot_pending) {
            'Left the services as they are: a restart is pending and the new build loads only after it'
        } elseif ($frontEnds -gt 1) {
            Invoke-CsComputerFailBack -ComputerName $Server -Confirm:$false
            'Invoke-CsComputerFailBack -ComputerName {0}: returned to pool {1}' -f $Server, $computerPool
        } else {
            try { Stop-CsWindowsService } catch { Write-Warning ('Stop-CsWindowsService: {0}' -f $_.Exception.Message) }
            Start-CsWindowsService
        }
        $services = @(Get-CsWindowsService)
        $result.facts.services = @($services | ForEach-Object { [ordered]@{ name = [string]$_.Name; status = ([string]$_.Status).ToLowerInvariant() } })
        $result.facts.w3svc = if ($null -eq $w3svc) { 'not-installed' } else { ([string](Get-Service -Name W3SVC).Status).ToLowerInvariant() }
        $down = @($services | Where-Object { [string]$_.Status -ne 'Running' })
        if (($down.Count -gt 0) -or ($result.facts.w3svc -eq 'stopped')) {
            $result.exit_code = 1
            '{0} is still out of service: W3SVC {1}, not running: {2}' -f $Server, $result.facts.w3svc, (($down | ForEach-Object { $_.Name }) -join ', ')
            return
        }
        '{0} is back in service' -f $Server
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

# sfbpatch-template: probe/check-fabric-state v1
# Probe for check-fabric-state: the fabric state and readiness, read. Never done: the check
# changes nothing and is always run again.
# A probe takes its step's parameters, so that it names the very action it checks.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,

    # The Front End pool's FQDN.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Pool,

    # The readiness cmdlet of the pool's product line: 'upgrade-domain-info'
    # (Get-CsUpgradeDomainInfo, 2019) or 'pool-upgrade-readiness-state'
    # (Get-CsPoolUpgradeReadinessState, 2015).
    [Parameter(Mandatory = $true)]
    [ValidateSet('upgrade-domain-info', 'pool-upgrade-readiness-state')]
    [string] $ReadinessCmdlet,

    # With missing replicas, recover the pool first (Reset-CsPoolRegistrarState
    # -ResetType QuorumLossRecovery) instead of stopping.
    [Parameter(Mandatory = $true)]
    [bool] $ResetMissingReplicas
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'probe/check-fabric-state'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        Import-Module -Name SkypeForBusiness
        $fabric = Get-CsPoolFabricState -PoolFqdn $Pool -Verbose 4>&1 | Out-String
        $result.facts.pool = $Pool
        $result.facts.missing_replicas = $fabric -match 'missing replica'
        if ($ReadinessCmdlet -eq 'upgrade-domain-info') {
            $readiness = Get-CsUpgradeDomainInfo
        } else {
            $readiness = Get-CsPoolUpgradeReadinessState
        }
        $result.facts.pool_upgrade_state = [string]$readiness.PoolUpgradeState
        $result.done = $false
        'Pool {0}: missing replicas {1}, PoolUpgradeState {2}' -f $Pool, $result.facts.missing_replicas, $result.facts.pool_upgrade_state
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

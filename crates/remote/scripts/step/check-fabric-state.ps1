# sfbpatch-template: step/check-fabric-state v1
# Before a Front End server leaves its pool: Get-CsPoolFabricState shows no missing
# replicas (or, when allowed, the pool is recovered with Reset-CsPoolRegistrarState first),
# and the readiness cmdlet says the pool is Ready. Busy answers exit_code 75: sfbpatch waits
# 10 minutes and asks again.
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
$result = [ordered]@{ template = 'step/check-fabric-state'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
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
        if ($ResetMissingReplicas) {
            if ($fabric -match 'missing replica') { Reset-CsPoolRegistrarState -PoolFqdn $Pool -ResetType QuorumLossRecovery -Confirm:$false }
        } else {
            if ($fabric -match 'missing replica') { throw ('Pool {0} has missing replicas; recover it first (Reset-CsPoolRegistrarState -PoolFqdn {0} -ResetType QuorumLossRecovery): {1}' -f $Pool, $fabric.Trim()) }
        }
        if ($ReadinessCmdlet -eq 'upgrade-domain-info') {
            $readiness = Get-CsUpgradeDomainInfo
        } else {
            $readiness = Get-CsPoolUpgradeReadinessState
        }
        $result.facts.pool_upgrade_state = [string]$readiness.PoolUpgradeState
        if ($readiness.PoolUpgradeState -eq 'Busy') { Write-Output 'PoolUpgradeState: Busy'; $result.exit_code = 75; return }
        if ($readiness.PoolUpgradeState -ne 'Ready') { throw ('Pool {0} is not ready for a server to leave it: PoolUpgradeState {1}' -f $Pool, $readiness.PoolUpgradeState) }
        'Pool {0}: no missing replicas, PoolUpgradeState Ready' -f $Pool
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

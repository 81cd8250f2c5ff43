# sfbpatch-template: step/verify v1
# The last step: Test-CsDatabase shows every database at its expected version (and at the
# package's schema version), every service runs (where the machine has them), a Front End
# server's pool has no missing replicas, and Get-CsServerPatchVersion shows the package's
# build.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,

    # The package's build, e.g. 7.0.2046.553.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^\d{1,9}(\.\d{1,9}){3}$')]
    [string] $Build,

    # The back end's SQL Server FQDN (the listener FQDN for an AlwaysOn availability group).
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $SqlServerFqdn,

    # The back end's SQL Server instance; '' for the default instance.
    [Parameter(Mandatory = $true)]
    [AllowEmptyString()]
    [ValidatePattern('^([A-Za-z_][A-Za-z0-9_$#]{0,15})?$')]
    [string] $SqlInstance,

    # Check the databases (false on a node whose databases another node updates).
    [Parameter(Mandatory = $true)]
    [bool] $CheckDatabases,

    # Check the local databases (Test-CsDatabase -LocalService, Standard Edition)
    # rather than the configured ones.
    [Parameter(Mandatory = $true)]
    [bool] $LocalDatabases,

    # The package's schema version per store ('user=15.13.27;archiving=15.13.2'), or ''.
    [Parameter(Mandatory = $true)]
    [AllowEmptyString()]
    [ValidatePattern('^([a-z-]+=\d+(\.\d+)*(;[a-z-]+=\d+(\.\d+)*)*)?$')]
    [string] $SchemaVersions,

    # Check the Skype for Business services (false on a machine that has none).
    [Parameter(Mandatory = $true)]
    [bool] $CheckServices,

    # A Front End server's pool, whose fabric must be healthy again; '' for none.
    [Parameter(Mandatory = $true)]
    [AllowEmptyString()]
    [ValidateLength(0, 253)]
    [ValidatePattern('^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)?$')]
    [string] $FabricPool
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'step/verify'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        Import-Module -Name SkypeForBusiness
        $result.facts.sql_server = $SqlServerFqdn
        $result.facts.sql_instance = $SqlInstance
        if ($CheckDatabases) {
            if ($LocalDatabases) {
                $databases = @(Test-CsDatabase -LocalService)
            } else {
                $databases = @(Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn $SqlServerFqdn)
            }
            $result.facts.databases = @($databases | ForEach-Object { [ordered]@{ SqlServerFqdn = [string]$_.SqlServerFqdn; SqlInstanceName = [string]$_.SqlInstanceName; DatabaseName = [string]$_.DatabaseName; ExpectedVersion = [string]$_.ExpectedVersion; InstalledVersion = [string]$_.InstalledVersion; Succeed = ([string]$_.Succeed -eq 'True') } })
            if ($databases.Count -eq 0) { throw 'Test-CsDatabase returned no databases' }
            $behind = @($databases | Where-Object { $_.InstalledVersion -ne $_.ExpectedVersion })
            if ($behind.Count -gt 0) { throw ('Databases not at their expected version: {0}' -f (($behind | ForEach-Object { '{0} {1}: installed {2}, expected {3}' -f $_.SqlServerFqdn, $_.DatabaseName, $_.InstalledVersion, $_.ExpectedVersion }) -join '; ')) }
            $storeDatabases = @{ 'user' = @('rtcxds', 'rtcshared', 'rtcab'); 'application' = @('rgsconfig', 'rgsdyn', 'cpsdyn'); 'central-management' = @('xds', 'lis'); 'archiving' = @('LcsLog'); 'monitoring' = @('LcsCDR', 'QoEMetrics'); 'persistent-chat' = @('mgc'); 'persistent-chat-compliance' = @('mgccomp') }
            $schemaVersion = @{}
            foreach ($pair in @($SchemaVersions -split ';' | Where-Object { $_ })) {
                $store, $version = $pair -split '=', 2
                foreach ($name in $storeDatabases[$store]) { $schemaVersion[$name] = $version }
            }
            $schema = @($databases | Where-Object { $schemaVersion.ContainsKey([string]$_.DatabaseName) -and $_.InstalledVersion -ne $schemaVersion[[string]$_.DatabaseName] })
            if ($schema.Count -gt 0) { throw ('Databases not at the package''s schema version: {0}' -f (($schema | ForEach-Object { '{0}: installed {1}' -f $_.DatabaseName, $_.InstalledVersion }) -join '; ')) }
        }
        $services = @()
        if ($CheckServices) {
            $services = @(Get-CsWindowsService)
            $result.facts.services = @($services | ForEach-Object { [ordered]@{ name = [string]$_.Name; status = ([string]$_.Status).ToLowerInvariant() } })
            $stopped = @(Get-CsWindowsService | Where-Object { $_.Status -ne 'Running' })
            if ($stopped.Count -gt 0) { throw ('Services not running: {0}' -f ($stopped.Name -join ', ')) }
        }
        if ($FabricPool) {
            $fabric = Get-CsPoolFabricState -PoolFqdn $FabricPool -Verbose 4>&1 | Out-String
            $result.facts.missing_replicas = $fabric -match 'missing replica'
            if ($fabric -match 'missing replica') { throw ('Get-CsPoolFabricState -PoolFqdn {0} reports missing replicas: {1}' -f $FabricPool, $fabric.Trim()) }
        }
        $versions = @(Get-CsServerPatchVersion | ForEach-Object { [version][string]$_.Version })
        if ($versions.Count -eq 0) { throw 'Get-CsServerPatchVersion returned no component' }
        $installed = $versions | Sort-Object -Descending | Select-Object -First 1
        $result.facts.installed_build = [string]$installed
        if (-not (Get-CsServerPatchVersion | Where-Object { $_.Version -eq $Build })) { throw ('Get-CsServerPatchVersion does not show build {0}' -f $Build) }
        '{0}: build {1}, {2} services running, databases checked: {3}' -f $Server, $Build, $services.Count, $CheckDatabases
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

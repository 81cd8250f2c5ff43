# sfbpatch-template: probe/verify v1
# Probe for verify: the build, services and W3SVC. Never done: verify changes nothing
# and is always run again.
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
$result = [ordered]@{ template = 'probe/verify'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        Import-Module -Name SkypeForBusiness
        $versions = @(Get-CsServerPatchVersion | ForEach-Object { [version][string]$_.Version })
        if ($versions.Count -eq 0) { throw 'Get-CsServerPatchVersion returned no component' }
        $installed = $versions | Sort-Object -Descending | Select-Object -First 1
        $result.facts.installed_build = [string]$installed
        $services = @(Get-CsWindowsService)
        $result.facts.services = @($services | ForEach-Object { [ordered]@{ name = [string]$_.Name; status = ([string]$_.Status).ToLowerInvariant() } })
        $w3svc = Get-Service -Name W3SVC -ErrorAction SilentlyContinue
        $result.facts.w3svc = if ($null -eq $w3svc) { 'not-installed' } else { ([string]$w3svc.Status).ToLowerInvariant() }
        $result.facts.reboot_pending = (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') -or ($null -ne (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue))
        $result.done = $false
        'Installed build {0} (the package is {1}), {2} services' -f $installed, $Build, $services.Count
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

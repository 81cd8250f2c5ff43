# sfbpatch-template: step/update-databases v1
# Step 9: apply the schema changes with the one Install-CsDatabase variant the topology
# calls for.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,

    # configured: Install-CsDatabase -ConfiguredDatabases; local: -LocalDatabases (Standard
    # Edition); deferred: another node of this back end updates the databases later.
    [Parameter(Mandatory = $true)]
    [ValidateSet('configured', 'local', 'deferred')]
    [string] $Variant,

    # The back end's SQL Server FQDN (the listener FQDN for an AlwaysOn availability group).
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $SqlServerFqdn,

    # Add -ExcludeCollocatedStores (the back end holds collocated stores).
    [Parameter(Mandatory = $true)]
    [bool] $ExcludeCollocatedStores,

    # With Variant 'deferred': the node that updates the databases; otherwise ''.
    [Parameter(Mandatory = $true)]
    [AllowEmptyString()]
    [ValidatePattern('^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)?$')]
    [string] $UpdatedBy
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'step/update-databases'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        if ($Variant -eq 'deferred') {
            'Nothing to do here: {0} updates the databases on {1} once every node has the update' -f $UpdatedBy, $SqlServerFqdn
        } elseif ($Variant -eq 'local') {
            Import-Module -Name SkypeForBusiness
            Install-CsDatabase -Update -LocalDatabases
        } elseif ($ExcludeCollocatedStores) {
            Import-Module -Name SkypeForBusiness
            Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn $SqlServerFqdn -ExcludeCollocatedStores
        } else {
            Import-Module -Name SkypeForBusiness
            Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn $SqlServerFqdn
        }
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

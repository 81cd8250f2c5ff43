# sfbpatch-template: probe/update-databases v1
# Probe for update-databases: done when Test-CsDatabase shows every database at its
# expected version (always done where another node updates the databases).
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
$result = [ordered]@{ template = 'probe/update-databases'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        if ($Variant -eq 'deferred') {
            $result.facts.updated_by = $UpdatedBy
            $result.done = $true
            'Nothing to check here: {0} updates the databases on {1}' -f $UpdatedBy, $SqlServerFqdn
        } else {
            Import-Module -Name SkypeForBusiness
            if ($Variant -eq 'local') {
                $databases = @(Test-CsDatabase -LocalService)
            } else {
                $databases = @(Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn $SqlServerFqdn)
            }
            $result.facts.databases = @($databases | ForEach-Object { [ordered]@{ SqlServerFqdn = [string]$_.SqlServerFqdn; SqlInstanceName = [string]$_.SqlInstanceName; DatabaseName = [string]$_.DatabaseName; ExpectedVersion = [string]$_.ExpectedVersion; InstalledVersion = [string]$_.InstalledVersion; Succeed = ([string]$_.Succeed -eq 'True') } })
            $behind = @($databases | Where-Object { $_.InstalledVersion -ne $_.ExpectedVersion })
            $result.facts.databases_behind = $behind.Count
            $result.done = ($databases.Count -gt 0) -and ($behind.Count -eq 0)
            '{0} databases, {1} behind their expected version' -f $databases.Count, $behind.Count
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

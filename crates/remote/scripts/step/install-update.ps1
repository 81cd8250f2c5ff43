# sfbpatch-template: step/install-update v1
# Step 6: run the staged installer unattended. Its exit code is the result: 0 done,
# 3010 done but Windows must restart, anything else failed. Loads no Skype for Business
# module, so that this session holds none of the files the installer replaces.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,

    # The staged installer.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[A-Za-z]:\\')]
    [string] $Path,

    # The package's build, e.g. 7.0.2046.553.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^\d{1,9}(\.\d{1,9}){3}$')]
    [string] $Build,

    # The installer's SHA-256 from the package manifest.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9A-Fa-f]{64}$')]
    [string] $Sha256,

    # The package's schema version per store ('user=15.13.27;archiving=15.13.2'), or ''.
    [Parameter(Mandatory = $true)]
    [AllowEmptyString()]
    [ValidatePattern('^([a-z-]+=\d+(\.\d+)*(;[a-z-]+=\d+(\.\d+)*)*)?$')]
    [string] $SchemaVersions
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'step/install-update'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $hash = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash
        if ($hash -ne $Sha256) { throw ('The installer was not staged: the SHA-256 of {0} is {1}, the package says {2}; run stage-update first' -f $Path, $hash, $Sha256) }
        'Installing build {0} from {1}' -f $Build, $Path
        $installer = Start-Process -FilePath $Path -ArgumentList '/silentmode' -Wait -PassThru
        $result.exit_code = $installer.ExitCode
        $result.facts.installer_exit_code = $installer.ExitCode
        $result.facts.schema_versions = $SchemaVersions
        if ($installer.ExitCode -eq 0) { 'The update is installed.' }
        elseif ($installer.ExitCode -eq 3010) { 'The update is installed; Windows must restart to complete it (exit code 3010).' }
        else { 'The installer failed with exit code {0}.' -f $installer.ExitCode }
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

# sfbpatch-template: step/stage-update v1
# Step 2: copy (or download) the cumulative update installer, check its SHA-256 against
# the package manifest and extract it, all before the outage window.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,

    # Where the installer comes from: a path this server reads ('path', UNC or local), an
    # https:// URL ('url'), or a file sfbpatch uploaded to the destination over SFTP before
    # this script ran ('uploaded').
    [Parameter(Mandatory = $true)]
    [ValidateSet('path', 'url', 'uploaded')]
    [string] $SourceKind,

    # The installer file (a local or UNC path), its https:// URL, or the controller's file
    # that was uploaded.
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [string] $Source,

    # The installer's SHA-256 from the package manifest.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9A-Fa-f]{64}$')]
    [string] $Sha256,

    # Where the installer is staged on this server.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[A-Za-z]:\\')]
    [string] $Destination,

    # The folder next to the staged installer that it is extracted into.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[A-Za-z]:\\')]
    [string] $ExtractFolder
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'step/stage-update'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Destination) | Out-Null
        if ($SourceKind -eq 'url') {
            [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
            $ProgressPreference = 'SilentlyContinue'
            Invoke-WebRequest -UseBasicParsing -Uri $Source -OutFile $Destination
        } elseif ($SourceKind -eq 'uploaded') {
            # $Destination is uploaded by sfbpatch over its SSH connection (SFTP) from $Source on the controller
            if (-not (Test-Path -LiteralPath $Destination -PathType Leaf)) { throw ('{0} was not uploaded (from {1} on the controller)' -f $Destination, $Source) }
        } else {
            Copy-Item -LiteralPath $Source -Destination $Destination -Force
        }
        $hash = (Get-FileHash -LiteralPath $Destination -Algorithm SHA256).Hash
        if ($hash -ne $Sha256) { Remove-Item -LiteralPath $Destination -Force; throw ('SHA-256 of {0} is {1}, the manifest says {2}' -f $Destination, $hash, $Sha256) }
        $extract = Start-Process -FilePath $Destination -ArgumentList ('/extractall:"{0}"' -f $ExtractFolder) -Wait -PassThru
        if ($extract.ExitCode -ne 0) { throw ('Extracting {0} failed with exit code {1}' -f $Destination, $extract.ExitCode) }
        $result.facts.staged_path = $Destination
        $result.facts.staged_sha256 = $hash.ToLowerInvariant()
        'Staged {0} as {1} (SHA-256 {2} matches the package), extracted to {3}' -f $Source, $Destination, $hash.ToLowerInvariant(), $ExtractFolder
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

# sfbpatch-template: server/stop v1
# Stop what sfbpatch gave up waiting for: every process whose command line contains the end of
# the timed-out script's encoded command (its parameter bindings, unique to the server and
# step), with its whole process tree (taskkill /T). sshd leaves an exec session's process
# running when the client goes away, so a timed-out step would otherwise carry on unseen.
# An installation that Windows Installer's own service carries out is not stopped by this:
# a later probe sees it running and sfbpatch waits for it.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,
    # The last characters of the timed-out script's base64 command.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[A-Za-z0-9+/=]{32,256}$')]
    [string] $CommandTail
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'server/stop'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $found = @(Get-CimInstance -ClassName Win32_Process | Where-Object {
                $_.ProcessId -ne $PID -and $_.CommandLine -and $_.CommandLine.Contains($CommandTail)
            })
        $ErrorActionPreference = 'Continue'
        foreach ($p in $found) {
            taskkill.exe /T /F /PID $p.ProcessId
        }
        $result.facts.stopped = $found.Count
        'Stopped {0} process tree(s) of the timed-out script' -f $found.Count
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

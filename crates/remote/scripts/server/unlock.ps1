# sfbpatch-template: server/unlock v1
# Release the lock this server keeps for the controller patching it (server/lock): the
# registry key HKLM:\SOFTWARE\sfbpatch\Lock is removed only when its Holder is this
# controller's run; another holder's lock is left as it is. A named mutex keeps server/lock
# from writing the key while it is read and removed.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,
    # Whose lock to remove: the controller's run (its state store and run id).
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[\x20-\x7e]{1,512}$')]
    [string] $Holder
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'server/unlock'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $key = 'HKLM:\SOFTWARE\sfbpatch\Lock'
        $mutex = New-Object -TypeName 'System.Threading.Mutex' -ArgumentList $false, 'Global\sfbpatch-lock'
        try {
            try {
                $owned = $mutex.WaitOne(30000)
            } catch [System.Threading.AbandonedMutexException] {
                # Its last owner ended without releasing it: it is ours now.
                $owned = $true
            }
            if (-not $owned) {
                throw 'Another sfbpatch script kept the lock of this server busy for 30 s; nothing was removed.'
            }
            try {
                $held = $null
                if (Test-Path -LiteralPath $key) {
                    $held = [string](Get-ItemProperty -LiteralPath $key).Holder
                }
                $result.facts.removed = ($null -ne $held) -and ($held -ceq $Holder)
                if ($result.facts.removed) {
                    Remove-Item -LiteralPath $key -Recurse -Force
                    'Removed the lock of {0} from {1}' -f $Holder, $Server
                } elseif ($null -eq $held) {
                    '{0} holds no lock; nothing was removed' -f $Server
                } else {
                    '{0} is locked by {1}, not {2}; nothing was removed' -f $Server, $held, $Holder
                }
            } finally {
                $mutex.ReleaseMutex()
            }
        } finally {
            $mutex.Dispose()
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

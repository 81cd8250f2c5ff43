# sfbpatch-template: server/lock v1
# Take the lock this server keeps for the controller patching it: the registry key
# HKLM:\SOFTWARE\sfbpatch\Lock with the values Holder (the controller's run), Generation (of
# its claim on the run) and ExpiresAt (Unix milliseconds). Another holder's lock that has not
# expired is left as it is and reported; the same holder's lock with a newer generation
# refuses this older controller (fenced); otherwise the lock is written for this holder and
# generation until ExpiresAt. A named mutex makes the read and the write one step for every
# sfbpatch script on the machine.
# Sent by sfbpatch as powershell.exe -EncodedCommand; values arrive only as parameters.
# Writes exactly one JSON line: template, exit_code, output, done, facts.
[CmdletBinding()]
param(
    # The server this script is for; it refuses to run on any other.
    [Parameter(Mandatory = $true)]
    [ValidateLength(1, 253)]
    [ValidatePattern('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')]
    [string] $Server,
    # Who takes the lock: the controller's run (its state store and run id).
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[\x20-\x7e]{1,512}$')]
    [string] $Holder,
    # The generation of the controller's claim on the run.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9]{1,19}$')]
    [string] $Generation,
    # The controller's clock: Unix milliseconds.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9]{1,19}$')]
    [string] $NowMs,
    # When the lock lapses unless it is taken again: Unix milliseconds.
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9]{1,19}$')]
    [string] $ExpiresAt
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$result = [ordered]@{ template = 'server/lock'; exit_code = 0; output = ''; done = $null; facts = [ordered]@{} }
$log = New-Object -TypeName 'System.Collections.Generic.List[object]'
try {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if (('{0}.{1}' -f $computer.DNSHostName, $computer.Domain) -ne $Server) {
        throw ('This script is for {0}; this computer is {1}.{2}.' -f $Server, $computer.DNSHostName, $computer.Domain)
    }
    & {
        $key = 'HKLM:\SOFTWARE\sfbpatch\Lock'
        $ours = [uint64]$Generation
        $now = [uint64]$NowMs
        $until = [uint64]$ExpiresAt
        $mutex = New-Object -TypeName 'System.Threading.Mutex' -ArgumentList $false, 'Global\sfbpatch-lock'
        try {
            try {
                $owned = $mutex.WaitOne(30000)
            } catch [System.Threading.AbandonedMutexException] {
                # Its last owner ended without releasing it: it is ours now.
                $owned = $true
            }
            if (-not $owned) {
                throw 'Another sfbpatch script kept the lock of this server busy for 30 s; nothing was taken.'
            }
            try {
                $held = $null
                if (Test-Path -LiteralPath $key) {
                    $held = Get-ItemProperty -LiteralPath $key
                    $heldGeneration = [uint64]0
                    $heldExpires = [uint64]0
                    if ([string]::IsNullOrEmpty([string]$held.Holder) -or -not [uint64]::TryParse([string]$held.Generation, [ref]$heldGeneration) -or -not [uint64]::TryParse([string]$held.ExpiresAt, [ref]$heldExpires)) {
                        throw ('The lock {0} cannot be read (Holder, Generation and ExpiresAt are expected); remove it by hand once no controller patches this server.' -f $key)
                    }
                }
                if (($null -ne $held) -and ([string]$held.Holder -cne $Holder) -and ($heldExpires -gt $now)) {
                    $result.facts.taken = $false
                    $result.facts.holder = [string]$held.Holder
                    $result.facts.generation = $heldGeneration
                    $result.facts.expires_at = $heldExpires
                    '{0} is locked by {1} (generation {2}) until {3} ms after the Unix epoch; nothing was taken' -f $Server, $held.Holder, $heldGeneration, $heldExpires
                } elseif (($null -ne $held) -and ([string]$held.Holder -ceq $Holder) -and ($heldGeneration -gt $ours)) {
                    $result.facts.taken = $false
                    $result.facts.fenced = $true
                    $result.facts.holder = [string]$held.Holder
                    $result.facts.generation = $heldGeneration
                    $result.facts.expires_at = $heldExpires
                    '{0} is locked by generation {1} of {2}, newer than generation {3}; nothing was taken' -f $Server, $heldGeneration, $Holder, $ours
                } else {
                    if (-not (Test-Path -LiteralPath $key)) {
                        New-Item -Path $key -Force | Out-Null
                    }
                    New-ItemProperty -LiteralPath $key -Name 'Holder' -Value $Holder -PropertyType String -Force | Out-Null
                    New-ItemProperty -LiteralPath $key -Name 'Generation' -Value $ours.ToString() -PropertyType String -Force | Out-Null
                    New-ItemProperty -LiteralPath $key -Name 'ExpiresAt' -Value $until.ToString() -PropertyType String -Force | Out-Null
                    $result.facts.taken = $true
                    '{0} is locked by {1} (generation {2}) until {3} ms after the Unix epoch' -f $Server, $Holder, $ours, $until
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

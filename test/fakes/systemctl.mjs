// Fake systemctl. `is-active` prints the state word and exits 0 only for "active" (3 otherwise),
// as systemd's systemctl does; start/stop/restart/daemon-reload print nothing on success. A failed
// restart prints systemd's "Job for … failed" text on stderr and exits 1.
// Knobs: NLE_FAKE_STATE (units.json: unit → state), NLE_FAKE_LOG, FAKE_SYSTEMCTL_FAIL=<verb>.
import {readState, record, writeState} from './lib.mjs'

record('systemctl')
const [verb, ...units] = process.argv.slice(2)
const states = readState('units.json', {})

if (process.env.FAKE_SYSTEMCTL_FAIL === verb) {
  const u = units[0] ?? ''
  process.stderr.write(`Job for ${u} failed because the control process exited with error code.\nSee "systemctl status ${u}" and "journalctl -xeu ${u}" for details.\n`)
  process.exit(1)
}
switch (verb) {
  case 'is-active': {
    const s = states[units[0]] ?? 'inactive'
    process.stdout.write(`${s}\n`)
    process.exit(s === 'active' ? 0 : 3)
    break
  }
  case 'start':
  case 'restart':
    for (const u of units) states[u] = 'active'
    break
  case 'stop':
    for (const u of units) states[u] = 'inactive'
    break
  case 'daemon-reload':
    break
  default:
    process.stderr.write(`Unknown command verb ${verb}.\n`)
    process.exit(1)
}
writeState('units.json', states)

// The systemd units: required keys for restart policy, the kdp user, secrets from an
// EnvironmentFile, the ExecStart contract, graceful stop and hardening. When systemd-analyze is
// installed the units are also verified by systemd itself.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from './helpers';

const DIR = join(repoRoot(), 'ops', 'systemd');
const SERVICES = ['gatherer', 'dedup', 'archive', 'maintain'] as const;

/** section -> key -> values (a key may repeat). Comments and blank lines are ignored. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(current && eq > 0, `malformed unit line: ${raw}`);
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

describe('systemd units', () => {
  for (const svc of SERVICES) {
    test(`kdp-${svc}.service has the restart, user, secrets, drain and hardening settings`, () => {
      const unit = parseUnit(readFileSync(join(DIR, `kdp-${svc}.service`), 'utf8'));
      const get = (section: string, key: string) => unit.get(section)?.get(key)?.at(-1);
      assert.equal(get('Service', 'Restart'), 'always');
      assert.equal(get('Service', 'RestartSec'), '10');
      assert.ok(Number(get('Unit', 'StartLimitIntervalSec')) > 0, 'StartLimitIntervalSec in [Unit]');
      assert.ok(Number(get('Unit', 'StartLimitBurst')) > 0, 'StartLimitBurst in [Unit]');
      assert.equal(get('Service', 'User'), 'kdp');
      assert.equal(get('Service', 'EnvironmentFile'), `/etc/kdp/${svc}.env`);
      assert.equal(get('Service', 'ExecStart'), `/usr/bin/env kdp ${svc} --config /etc/kdp/${svc}.yaml`);
      assert.equal(get('Service', 'KillSignal'), 'SIGTERM');
      assert.ok(Number(get('Service', 'TimeoutStopSec')) >= 30, 'time to drain');
      assert.equal(get('Service', 'NoNewPrivileges'), 'true');
      assert.equal(get('Service', 'ProtectSystem'), 'strict');
      assert.equal(get('Service', 'PrivateTmp'), 'true');
      assert.ok(get('Service', 'ReadWritePaths')?.startsWith('/var/lib/kdp/'), 'ReadWritePaths');
      assert.equal(get('Install', 'WantedBy'), 'multi-user.target');
      assert.equal(unit.get('Service')?.has('Environment'), false, 'secrets belong in the EnvironmentFile, not the unit');
    });
  }

  test('the archive unit may write the archive directory', () => {
    const unit = parseUnit(readFileSync(join(DIR, 'kdp-archive.service'), 'utf8'));
    assert.deepEqual(unit.get('Service')?.get('ReadWritePaths'), ['/var/lib/kdp/archive']);
  });

  test('systemd-analyze verify accepts the units (when systemd is installed)', (t) => {
    const files = SERVICES.map((s) => join(DIR, `kdp-${s}.service`));
    const r = spawnSync('systemd-analyze', ['verify', ...files], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
      t.diagnostic('systemd-analyze not installed: units checked by parsing only');
      return;
    }
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.doesNotMatch(`${r.stdout}${r.stderr}`, /kdp-\w+\.service:\d+: /, 'no warnings about unit lines');
  });
});

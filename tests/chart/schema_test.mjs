// values.schema.json (and the templates' own checks) refuse bad values
// before anything is rendered, naming the field. Each tests/chart/bad/*.yaml
// says in its "# refused:" lines what the error must contain.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHART, TESTS, helm } from './lib.mjs';

const BAD = join(TESTS, 'bad');

for (const file of readdirSync(BAD).filter((f) => f.endsWith('.yaml')).sort()) {
  const text = readFileSync(join(BAD, file), 'utf8');
  const expected = [...text.matchAll(/^# refused: (.+)$/gm)].map((m) => m[1].trim());
  test(`${file} is refused`, async () => {
    assert.ok(expected.length > 0, `${file} says what the error must name (# refused: ...)`);
    const result = await helm(['template', 'buildd', CHART, '-f', join(BAD, file)]);
    assert.notEqual(result.code, 0, `${file} rendered:\n${result.stdout.slice(0, 400)}`);
    assert.equal(result.stdout, '', 'nothing rendered');
    for (const part of expected) {
      assert.ok(result.stderr.includes(part), `${file}: "${part}" not in:\n${result.stderr}`);
    }
  });
}

test('the schema is draft-07 and closed at the top', () => {
  const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  assert.equal(schema.additionalProperties, false);
  // Every top-level key of values.yaml is described.
  const values = readFileSync(join(CHART, 'values.yaml'), 'utf8');
  for (const m of values.matchAll(/^([A-Za-z][A-Za-z0-9]*):/gm)) {
    assert.ok(schema.properties[m[1]], `values.yaml's ${m[1]} is in the schema`);
  }
});

test('the bounds are where they say: one broker or gateway is allowed, a database by URL or Secret', async () => {
  const accepted = [
    ['--set', 'database.url=postgresql://db/buildd', '--set', 'broker.replicas=1', '--set', 'gateway.replicas=1'],
    ['--set', 'database.existingSecret=pg-app'],
    ['--set', 'database.url=postgresql://db/buildd', '--set', 'runner.replicas=0'],
    // Durations as the runner's --idle_exit parses them; providers by name.
    ['--set', 'database.url=postgresql://db/buildd', '--set', 'runner.autoscaling.enabled=true',
     '--set', 'runner.autoscaling.kind=ScaledJob', '--set', 'runner.idleExit=1h30m',
     '--set', 'runner.autoscaling.providers={command,claude,codex}'],
    ['--set', 'database.url=postgresql://db/buildd', '--set', 'runner.autoscaling.enabled=true',
     '--set', 'runner.autoscaling.kind=ScaledJob', '--set', 'runner.idleExit=90.5s'],
  ];
  for (const args of accepted) {
    const result = await helm(['template', 'buildd', CHART, ...args]);
    assert.equal(result.code, 0, `${args.join(' ')}:\n${result.stderr}`);
  }
  const refused = [
    [['--set', 'broker.replicas=1'], "at '/database/url'"],
    [['--set', 'database.url=postgresql://db/buildd', '--set', 'runner.maxTasks=0'], "at '/runner/maxTasks'"],
    [['--set', 'database.url=postgresql://db/buildd', '--set-string', 'broker.replicas=2'], "at '/broker/replicas': got string"],
  ];
  for (const [args, message] of refused) {
    const result = await helm(['template', 'buildd', CHART, ...args]);
    assert.notEqual(result.code, 0, args.join(' '));
    assert.ok(result.stderr.includes(message), `${args.join(' ')}: ${result.stderr}`);
  }
});

// The chart rendered offline with the values sets in tests/chart: helm lint
// passes, every object is one an API server would take, and what a user or
// an operator relies on is there (probes, security settings, the
// migrations hook, secrets only as files, NetworkPolicies, replicas, TLS,
// KEDA). Prints how long `helm template` took for each values set.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CHART, NAMESPACE, RELEASE, ROOT, TESTS, container, containers, decode, fileSource, find, flags,
  helm, must, name, ofKind, podSpec, podTemplate, render, selects, workloads,
} from './lib.mjs';
import { problems } from './validate.mjs';

const SETS = [
  'values-default.yaml',
  'values-production.yaml',
  'values-tls-secrets.yaml',
  'values-existing-secrets.yaml',
  'values-no-runner.yaml',
  'values-scaled-job.yaml',
];

// Rendered once, one after another (the machine is shared).
const rendered = {};
for (const file of SETS) {
  const { objects, ms } = await render(file);
  rendered[file] = objects;
  console.log(`chart: helm template ${file}: ${ms.toFixed(0)} ms, ${objects.length} objects`);
}
const valuesOf = (file) => readFileSync(join(TESTS, file), 'utf8');
const deployment = (objects, component) => must(objects, 'Deployment', name(component));
// The runners' Deployment, or the ScaledJob that starts them as Jobs.
const runnerWorkload = (objects) =>
  find(objects, 'Deployment', name('runner')) || find(objects, 'ScaledJob', name('runner'));
const hasRunner = (objects) => runnerWorkload(objects) !== undefined;
const grpcPortOf = (c) => c.ports.find((p) => p.name === 'grpc').containerPort;
const portNamed = (c, portName) => c.ports.find((p) => p.name === portName)?.containerPort;
const annotations = (o) => o.metadata.annotations || {};

test('helm lint --strict passes with every values set', async () => {
  for (const file of SETS) {
    const result = await helm(['lint', '--strict', CHART, '-f', join(TESTS, file)]);
    assert.equal(result.code, 0, `${file}:\n${result.stdout}${result.stderr}`);
  }
});

test('every rendered object is valid for its kind and has no unknown field', async () => {
  for (const file of SETS) {
    const found = [];
    for (const object of rendered[file]) found.push(...await problems(object));
    assert.deepEqual(found, [], `${file}`);
  }
});

test('every object has the standard labels', () => {
  for (const file of SETS) {
    for (const o of rendered[file]) {
      const labels = o.metadata.labels || {};
      const id = `${file}: ${o.kind}/${o.metadata.name}`;
      assert.equal(labels['app.kubernetes.io/name'], 'buildd', id);
      assert.equal(labels['app.kubernetes.io/instance'], RELEASE, id);
      assert.equal(labels['app.kubernetes.io/managed-by'], 'Helm', id);
      assert.match(labels['helm.sh/chart'] || '', /^buildd-\d+\.\d+\.\d+/, id);
      assert.match(labels['app.kubernetes.io/version'] || '', /^\d+\.\d+\.\d+/, id);
      if (['Deployment', 'Job', 'Service', 'PodDisruptionBudget', 'NetworkPolicy'].includes(o.kind)) {
        assert.ok(labels['app.kubernetes.io/component'], `${id} names its component`);
      }
    }
  }
});

test('images default to the chart appVersion, per component', async () => {
  const chart = readFileSync(join(CHART, 'Chart.yaml'), 'utf8');
  const appVersion = /^appVersion:\s*"?([^"\n]+)"?/m.exec(chart)[1];
  const objects = rendered['values-default.yaml'];
  for (const component of ['accounts', 'broker', 'gateway']) {
    assert.equal(container(deployment(objects, component), component).image, `buildd/services:${appVersion}`);
  }
  // What ./buildd image builds (localhost/buildd/...), the registry left
  // to the operator.
  assert.equal(container(deployment(objects, 'runner'), 'runner').image, `buildd/runner:${appVersion}`);
  const production = rendered['values-production.yaml'];
  assert.equal(container(deployment(production, 'runner'), 'runner').image,
               `registry.example.com/buildd/runner:${appVersion}`);
  assert.equal(container(deployment(production, 'broker'), 'broker').image,
               `registry.example.com/buildd/services:0.1.0`);
  for (const w of workloads(production)) {
    assert.deepEqual(podSpec(w).imagePullSecrets, [{ name: 'registry-credentials' }], w.metadata.name);
  }
  // One component's image, its migrations included, and nothing else's.
  const { objects: canary } = await render('values-default.yaml', [
    '--set', 'broker.image.tag=0.2.0-rc1', '--set', 'broker.image.pullPolicy=Always']);
  const broker = container(deployment(canary, 'broker'), 'broker');
  assert.equal(broker.image, 'buildd/services:0.2.0-rc1');
  assert.equal(broker.imagePullPolicy, 'Always');
  assert.equal(container(must(canary, 'Job', name('migrate')), 'migrate-broker').image, broker.image);
  assert.equal(container(must(canary, 'Job', name('migrate')), 'migrate-accounts').image,
               `buildd/services:${appVersion}`);
  assert.equal(container(deployment(canary, 'gateway'), 'gateway').imagePullPolicy, 'IfNotPresent');
});

test('brokers and gateways run two or more, apart, under a PodDisruptionBudget', () => {
  for (const file of SETS) {
    const objects = rendered[file];
    for (const component of ['broker', 'gateway']) {
      const d = deployment(objects, component);
      assert.ok(d.spec.replicas >= 2, `${file}: ${component} replicas ${d.spec.replicas}`);
      const pdb = must(objects, 'PodDisruptionBudget', name(component));
      assert.ok(selects(pdb.spec.selector, d.spec.template.metadata.labels), `${component} PDB`);
      assert.ok(pdb.spec.minAvailable >= 1);
      assert.ok(pdb.spec.minAvailable < d.spec.replicas, 'a PDB that blocks every drain');
      const terms = podSpec(d).affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
      assert.equal(terms[0].podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
      assert.ok(selects(terms[0].podAffinityTerm.labelSelector, d.spec.template.metadata.labels));
    }
  }
  const production = rendered['values-production.yaml'];
  assert.equal(deployment(production, 'broker').spec.replicas, 3);
  assert.ok(must(production, 'PodDisruptionBudget', name('accounts')), 'accounts x2 get a PDB');
  assert.equal(find(rendered['values-default.yaml'], 'PodDisruptionBudget', name('accounts')),
               undefined, 'one accounts pod gets no PDB that would block every drain');
});

test('accounts and broker have gRPC probes on their gRPC port, the gateway and runner HTTP ones', () => {
  const objects = rendered['values-default.yaml'];
  for (const component of ['accounts', 'broker']) {
    const c = container(deployment(objects, component), component);
    const port = grpcPortOf(c);
    assert.equal(flags(c).get('listen'), `0.0.0.0:${port}`);
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      assert.deepEqual(c[probe].grpc, { port }, `${component} ${probe}`);
    }
  }
  const gateway = container(deployment(objects, 'gateway'), 'gateway');
  assert.deepEqual(gateway.readinessProbe.httpGet, { path: '/health', port: 'http', scheme: 'HTTP' });
  assert.equal(gateway.livenessProbe.httpGet.port, 'http');
  assert.equal(flags(gateway).get('listen'), `0.0.0.0:${portNamed(gateway, 'http')}`);
  const runner = container(deployment(objects, 'runner'), 'runner');
  for (const probe of ['readinessProbe', 'livenessProbe']) {
    assert.equal(runner[probe].httpGet.path, '/health');
    assert.equal(runner[probe].httpGet.port, 'metrics');
  }
  assert.equal(flags(runner).get('listen'), `0.0.0.0:${portNamed(runner, 'metrics')}`);
});

test('with TLS the service probes ask /health on the metrics port (gRPC probes are plaintext)', () => {
  for (const file of ['values-production.yaml', 'values-tls-secrets.yaml']) {
    const objects = rendered[file];
    for (const component of ['accounts', 'broker']) {
      const c = container(deployment(objects, component), component);
      assert.equal(flags(c).get('metrics_listen'), `0.0.0.0:${portNamed(c, 'metrics')}`);
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        assert.equal(c[probe].grpc, undefined, `${file} ${component} ${probe}`);
        assert.deepEqual(c[probe].httpGet, { path: '/health', port: 'metrics' });
      }
    }
    const gateway = container(deployment(objects, 'gateway'), 'gateway');
    assert.equal(gateway.readinessProbe.httpGet.scheme, 'HTTPS', `${file}: the gateway serves HTTPS`);
  }
});

test('the runner runs restricted: non-root, read-only root, no privilege, no capability, seccomp', () => {
  for (const file of SETS.filter((f) => hasRunner(rendered[f]))) {
    const d = runnerWorkload(rendered[file]);
    const spec = podSpec(d);
    const c = container(d, 'runner');
    const sc = c.securityContext;
    assert.equal(sc.runAsNonRoot, true, file);
    assert.equal(sc.readOnlyRootFilesystem, true, file);
    assert.equal(sc.allowPrivilegeEscalation, false, file);
    assert.deepEqual(sc.capabilities.drop, ['ALL'], file);
    assert.equal(sc.seccompProfile.type, 'RuntimeDefault', file);
    assert.equal(spec.securityContext.runAsNonRoot, true);
    assert.equal(spec.securityContext.runAsUser, 10001, 'the runner image user');
    assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(flags(c).get('sandbox'), 'none', 'the pod is the sandbox by default');
    assert.ok(c.resources.requests.cpu && c.resources.limits.memory, 'resources');
    // What it writes: the work dir, /tmp and $HOME, each a volume.
    const mounts = new Map(c.volumeMounts.map((m) => [m.mountPath, m]));
    const workDir = flags(c).get('work_dir');
    const home = c.env.find((e) => e.name === 'HOME').value;
    for (const path of [workDir, '/tmp', home]) {
      const mount = mounts.get(path);
      assert.ok(mount && !mount.readOnly, `${file}: ${path} is a writable volume`);
      const volume = spec.volumes.find((v) => v.name === mount.name);
      assert.ok(volume.emptyDir || volume.persistentVolumeClaim, `${file}: ${path}`);
    }
  }
  // Every other component too.
  for (const file of SETS) {
    for (const w of workloads(rendered[file])) {
      for (const c of containers(w)) {
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${w.metadata.name}/${c.name}`);
        assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      }
      assert.equal(podSpec(w).securityContext.runAsNonRoot, true, w.metadata.name);
    }
  }
});

test('the sandbox is a value', async () => {
  const { objects } = await render('values-default.yaml', ['--set', 'runner.sandbox=bwrap']);
  assert.equal(flags(container(deployment(objects, 'runner'), 'runner')).get('sandbox'), 'bwrap');
});

test('the runner pod outlives its drain: grace > --drain_timeout_ms + --cancel_grace_ms', async () => {
  const check = (objects, drainSeconds) => {
    const d = deployment(objects, 'runner');
    const f = flags(container(d, 'runner'));
    const drain = Number(f.get('drain_timeout_ms')) / 1000;
    const cancel = Number(f.get('cancel_grace_ms')) / 1000;
    assert.equal(drain, drainSeconds);
    assert.ok(podSpec(d).terminationGracePeriodSeconds > drain + cancel,
              `${podSpec(d).terminationGracePeriodSeconds} s for ${drain} + ${cancel} s`);
  };
  check(rendered['values-default.yaml'], 600);
  check(rendered['values-production.yaml'], 1800);
  const { objects } = await render('values-default.yaml', ['--set', 'runner.drainTimeoutSeconds=45']);
  check(objects, 45);
});

test('the migrations run as a pre-install/pre-upgrade hook Job: accounts then broker, --migrate=only', () => {
  for (const file of SETS) {
    const objects = rendered[file];
    const job = must(objects, 'Job', name('migrate'));
    const a = annotations(job);
    assert.equal(a['helm.sh/hook'], 'pre-install,pre-upgrade');
    assert.equal(a['helm.sh/hook-delete-policy'], 'before-hook-creation,hook-succeeded');
    const weight = Number(a['helm.sh/hook-weight']);
    assert.ok(Number.isInteger(weight));
    const spec = podSpec(job);
    assert.equal(spec.restartPolicy, 'Never');
    assert.deepEqual(spec.initContainers.map((c) => c.command[0]), ['/usr/bin/buildd-accounts']);
    assert.deepEqual(spec.containers.map((c) => c.command[0]), ['/usr/bin/buildd-broker']);
    for (const c of containers(job)) {
      const f = flags(c);
      assert.equal(f.get('migrate'), 'only', `${file}: ${c.name}`);
      // It needs the database URL, and nothing else.
      assert.deepEqual([...f.keys()].filter((k) => k.endsWith('_file')), ['database_url_file']);
      // What it reads exists before it runs: a hook of lower weight, or a
      // Secret the operator made (the release's own objects come after).
      const source = fileSource(job, c, f.get('database_url_file'));
      assert.ok(source?.secret, `${file}: the URL is a Secret key`);
      const secret = find(objects, 'Secret', source.secret);
      if (secret) {
        assert.match(annotations(secret)['helm.sh/hook'] || '', /pre-install/, `${file}: ${source.secret}`);
        assert.match(annotations(secret)['helm.sh/hook'] || '', /pre-upgrade/);
        assert.ok(Number(annotations(secret)['helm.sh/hook-weight']) < weight);
        assert.ok(secret.data[source.key], `${source.secret} has ${source.key}`);
      } else {
        assert.match(valuesOf(file), new RegExp(`existingSecret: ${source.secret}\\b`));
      }
    }
    const sa = find(objects, 'ServiceAccount', spec.serviceAccountName);
    if (sa) {
      assert.match(annotations(sa)['helm.sh/hook'] || '', /pre-install/, `${file}: the Job's ServiceAccount`);
      assert.ok(Number(annotations(sa)['helm.sh/hook-weight']) < weight);
    } else {
      assert.match(valuesOf(file), new RegExp(`name: ${spec.serviceAccountName}\\b`));
    }
  }
});

test('the services start with --migrate=check; nothing else migrates', () => {
  for (const file of SETS) {
    const objects = rendered[file];
    for (const component of ['accounts', 'broker']) {
      assert.equal(flags(container(deployment(objects, component), component)).get('migrate'), 'check');
    }
    for (const d of ofKind(objects, 'Deployment')) {
      for (const c of containers(d)) assert.notEqual(flags(c).get('migrate'), 'only', d.metadata.name);
    }
  }
});

// Every secret value the chart knows: what it put into Secrets, and what
// the values files hold.
function secretValues(objects, file) {
  const values = new Set();
  for (const s of ofKind(objects, 'Secret')) {
    for (const v of Object.values(s.data || {})) values.add(decode(v));
    for (const v of Object.values(s.stringData || {})) values.add(v);
  }
  const url = /^\s*url:\s*(\S.*)$/m.exec(valuesOf(file));
  if (url) values.add(url[1].trim());
  values.add('pg-password-from-values');
  return [...values].filter((v) => v.length >= 8);
}

test('secrets reach the pods only as files: none in env, args or command', () => {
  for (const file of SETS) {
    const objects = rendered[file];
    const secrets = secretValues(objects, file);
    assert.ok(secrets.length > 0);
    for (const w of workloads(objects)) {
      for (const c of containers(w)) {
        const id = `${file}: ${w.metadata.name}/${c.name}`;
        assert.equal(c.envFrom, undefined, `${id} takes no envFrom`);
        for (const e of c.env || []) {
          assert.equal(e.valueFrom?.secretKeyRef, undefined, `${id}: env ${e.name} from a Secret`);
        }
        const exposed = [...(c.command || []), ...(c.args || []),
                         ...(c.env || []).map((e) => e.value || '')];
        for (const text of exposed) {
          for (const secret of secrets) {
            assert.ok(!text.includes(secret), `${id} shows a secret: ${text}`);
          }
        }
        // A secret flag is only ever the _file form.
        for (const flag of flags(c).keys()) {
          assert.doesNotMatch(flag, /^(master_key|key_pepper|session_key|service_key|admin_key|runner_key|api_key|database_url)$/, id);
        }
      }
    }
  }
});

// The chart's key files and what each must hold.
const KEY_FORMS = {
  'master-key': /^[0-9a-f]{64}$/,
  'session-key': /^[0-9a-f]{64}$/,
  'key-pepper': /^.{16,}$/,
  'service-key': /^.{32,}$/,
  'admin-key': /^buildd_service_[0-9a-f]{64}$/,
  'runner-key': /^buildd_service_[0-9a-f]{64}$/,
};

test('every --X_file flag reads a key of a Secret that exists or that the operator names', () => {
  for (const file of SETS) {
    const objects = rendered[file];
    for (const w of workloads(objects)) {
      for (const c of containers(w)) {
        for (const [flag, path] of flags(c)) {
          if (!flag.endsWith('_file')) continue;
          const id = `${file}: ${w.metadata.name}/${c.name} --${flag}`;
          const source = fileSource(w, c, path);
          assert.ok(source?.secret, `${id}: ${path} is a Secret key`);
          const secret = find(objects, 'Secret', source.secret);
          if (secret) {
            const value = secret.data?.[source.key];
            assert.ok(value, `${id}: ${source.secret} has no ${source.key}`);
            if (KEY_FORMS[source.key]) assert.match(decode(value), KEY_FORMS[source.key], id);
          } else {
            // Named by the operator: an existingSecret, or a CA's Secret.
            assert.match(valuesOf(file), new RegExp(`existingSecret: ${source.secret}\\b|caSecret:\\s+name: ${source.secret}\\b`), id);
            assert.match(valuesOf(file), new RegExp(`Key: ${source.key}\\b|key: ${source.key}\\b`), id);
          }
        }
      }
    }
  }
});

test('generated keys are well-formed random hex, kept by helm uninstall', async () => {
  const keys = must(rendered['values-default.yaml'], 'Secret', name('keys'));
  assert.equal(annotations(keys)['helm.sh/resource-policy'], 'keep');
  assert.deepEqual(Object.keys(keys.data).sort(), Object.keys(KEY_FORMS).sort());
  for (const [key, form] of Object.entries(KEY_FORMS)) assert.match(decode(keys.data[key]), form, key);
  const values = Object.values(keys.data).map(decode);
  assert.equal(new Set(values).size, values.length, 'each key its own');
  // Without a cluster lookup finds nothing: a second render makes new keys
  // (upgrade_test.mjs shows that with the Secret there they are kept).
  const again = must((await render('values-default.yaml')).objects, 'Secret', name('keys'));
  for (const key of Object.keys(KEY_FORMS)) assert.notEqual(again.data[key], keys.data[key], key);
});

test('the chart generates only the keys that no existingSecret gives', () => {
  const existing = rendered['values-existing-secrets.yaml'];
  assert.equal(find(existing, 'Secret', name('keys')), undefined);
  assert.equal(find(existing, 'Secret', name('database')), undefined);
  assert.equal(find(existing, 'Secret', name('migrate-database')), undefined);
  assert.deepEqual(ofKind(existing, 'Secret'), []);
  const partial = must(rendered['values-no-runner.yaml'], 'Secret', name('keys'));
  assert.equal(partial.data['admin-key'], undefined, 'the admin key is the operator\'s');
  assert.ok(partial.data['master-key']);
});

test('accounts bootstraps the runners\' key unless told it is an account of the operator\'s', () => {
  const accounts = (file) => flags(container(deployment(rendered[file], 'accounts'), 'accounts'));
  assert.equal(accounts('values-default.yaml').get('runner_key_file'), '/etc/buildd/secrets/runner-key');
  assert.equal(accounts('values-default.yaml').get('runner_name'), 'kubernetes runners');
  assert.equal(accounts('values-existing-secrets.yaml').get('runner_key_file'), undefined);
  assert.equal(accounts('values-no-runner.yaml').get('runner_key_file'), undefined);
  const runner = flags(container(deployment(rendered['values-default.yaml'], 'runner'), 'runner'));
  assert.equal(runner.get('api_key_file'), '/etc/buildd/secrets/runner-key');
});

test('the components find each other by their Services', () => {
  for (const file of SETS) {
    const objects = rendered[file];
    const ports = {};
    for (const component of ['accounts', 'broker', 'gateway']) {
      const service = must(objects, 'Service', name(component));
      const d = deployment(objects, component);
      assert.ok(selects(service.spec.selector, d.spec.template.metadata.labels), `${file}: ${component}`);
      const c = container(d, component);
      for (const port of service.spec.ports) {
        assert.ok(portNamed(c, port.targetPort), `${component} has a port ${port.targetPort}`);
        assert.equal(port.port, portNamed(c, port.targetPort));
      }
      ports[component] = service.spec.ports.find((p) => ['grpc', 'http'].includes(p.name)).port;
    }
    const gateway = flags(container(deployment(objects, 'gateway'), 'gateway'));
    const broker = flags(container(deployment(objects, 'broker'), 'broker'));
    assert.equal(gateway.get('accounts_addr'), `${name('accounts')}:${ports.accounts}`);
    assert.equal(gateway.get('broker_addr'), `${name('broker')}:${ports.broker}`);
    assert.equal(broker.get('accounts_addr'), `${name('accounts')}:${ports.accounts}`);
    if (hasRunner(objects)) {
      const runner = flags(container(runnerWorkload(objects), 'runner'));
      assert.equal(runner.get('server'), `${name('broker')}:${ports.broker}`);
    }
  }
});

test('every flag the chart passes is one its binary has', () => {
  const sources = {
    'buildd-accounts': ['services/accounts/main.cc', 'common/tls.cc', 'common/service_main.cc'],
    'buildd-broker': ['services/broker/main.cc', 'common/tls.cc', 'common/service_main.cc'],
    'buildd-gateway': ['gateway/main.cc', 'common/tls.cc'],
    'buildd-runner': ['services/runner/main.cc', 'common/tls.cc'],
  };
  const known = {};
  for (const [binary, files] of Object.entries(sources)) {
    known[binary] = new Set();
    for (const f of files) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      for (const m of text.matchAll(/ABSL_FLAG\(\s*[^,]+,\s*([a-z0-9_]+)\s*,/g)) known[binary].add(m[1]);
    }
  }
  const passed = new Set();
  for (const file of SETS) {
    for (const w of workloads(rendered[file])) {
      for (const c of containers(w)) {
        const binary = c.command[0].replace('/usr/bin/', '');
        assert.ok(known[binary], `${w.metadata.name}: ${binary}`);
        for (const flag of flags(c).keys()) {
          assert.ok(known[binary].has(flag), `${file}: ${binary} has no --${flag}`);
          passed.add(`${binary} --${flag}`);
        }
      }
    }
  }
  // The values sets pass the newer flags, so the check covers them.
  for (const flag of ['buildd-accounts --migrate', 'buildd-broker --migrate', 'buildd-broker --scaler_listen',
                      'buildd-runner --api_key_file', 'buildd-runner --once', 'buildd-runner --idle_exit']) {
    assert.ok(passed.has(flag), `no values set passes ${flag}`);
  }
});

test('NetworkPolicies: runners reach only the broker and DNS; only the gateway is open', () => {
  const objects = rendered['values-default.yaml'];
  const labels = (component) => deployment(objects, component).spec.template.metadata.labels;
  const policy = (component) => {
    const p = must(objects, 'NetworkPolicy', name(component));
    assert.ok(selects(p.spec.podSelector, labels(component)), `${component} policy selects its pods`);
    return p;
  };
  const fromComponents = (rule) => rule.from.map((peer) => {
    assert.deepEqual(Object.keys(peer), ['podSelector'], 'pods of this release, this namespace');
    return peer.podSelector.matchLabels['app.kubernetes.io/component'];
  }).sort();

  const runner = policy('runner');
  assert.deepEqual(runner.spec.policyTypes.sort(), ['Egress', 'Ingress']);
  assert.deepEqual(runner.spec.ingress, [], 'nothing may call a runner');
  assert.equal(runner.spec.egress.length, 2, 'the broker and DNS, nothing else');
  const [toBroker, toDns] = runner.spec.egress;
  assert.equal(toBroker.to.length, 1);
  assert.ok(selects(toBroker.to[0].podSelector, labels('broker')));
  assert.deepEqual(toBroker.ports, [{ port: 7002, protocol: 'TCP' }]);
  assert.deepEqual(toDns.ports.map((p) => `${p.port}/${p.protocol}`).sort(), ['53/TCP', '53/UDP']);
  assert.equal(toDns.to[0].podSelector.matchLabels['k8s-app'], 'kube-dns');

  const broker = policy('broker');
  assert.deepEqual(broker.spec.policyTypes, ['Ingress']);
  assert.equal(broker.spec.ingress.length, 1);
  assert.deepEqual(fromComponents(broker.spec.ingress[0]), ['gateway', 'runner']);
  assert.deepEqual(broker.spec.ingress[0].ports, [{ port: 7002, protocol: 'TCP' }]);

  const accounts = policy('accounts');
  assert.equal(accounts.spec.ingress.length, 1);
  assert.deepEqual(fromComponents(accounts.spec.ingress[0]), ['broker', 'gateway']);
  assert.deepEqual(accounts.spec.ingress[0].ports, [{ port: 7001, protocol: 'TCP' }]);

  const gateway = policy('gateway');
  assert.equal(gateway.spec.ingress.length, 1);
  assert.equal(gateway.spec.ingress[0].from, undefined, 'open to all by default');
  assert.deepEqual(gateway.spec.ingress[0].ports, [{ port: 8080, protocol: 'TCP' }]);

  assert.deepEqual(ofKind(rendered['values-no-runner.yaml'], 'NetworkPolicy'), []);
});

test('NetworkPolicies open what the operator names: metrics, runner egress, gateway callers', () => {
  const production = rendered['values-production.yaml'];
  for (const component of ['accounts', 'broker', 'runner']) {
    const rules = must(production, 'NetworkPolicy', name(component)).spec.ingress;
    const metrics = rules.find((r) => r.ports[0].port === 9090);
    assert.equal(metrics.from[0].namespaceSelector.matchLabels['kubernetes.io/metadata.name'], 'monitoring');
  }
  const runner = must(production, 'NetworkPolicy', name('runner'));
  assert.equal(runner.spec.egress.length, 3);
  assert.equal(runner.spec.egress[2].to[0].ipBlock.cidr, '0.0.0.0/0');
  const gateway = must(rendered['values-tls-secrets.yaml'], 'NetworkPolicy', name('gateway'));
  assert.equal(gateway.spec.ingress[0].from[0].namespaceSelector.matchLabels['kubernetes.io/metadata.name'],
               'ingress-nginx');
});

// The broker's ingress rules as "who -> ports".
function brokerIngress(objects) {
  return must(objects, 'NetworkPolicy', name('broker')).spec.ingress.map((rule) => {
    const who = rule.from.map((peer) => peer.podSelector
      ? peer.podSelector.matchLabels['app.kubernetes.io/component']
      : `namespace ${peer.namespaceSelector.matchLabels['kubernetes.io/metadata.name']}`);
    return `${who.sort().join(',')} -> ${rule.ports.map((p) => `${p.port}/${p.protocol}`).join(',')}`;
  });
}

test('KEDA\'s namespace reaches the broker\'s scaler port and nothing else; gateway and runners its gRPC port', () => {
  const expect = {
    // Pushed by the broker: KEDA dials the scaler port.
    'values-production.yaml': ['gateway,runner -> 7002/TCP', 'namespace keda -> 7004/TCP',
                               'namespace monitoring -> 9090/TCP'],
    'values-scaled-job.yaml': ['gateway,runner -> 7002/TCP', 'namespace keda-system -> 7100/TCP'],
    // Read from Prometheus, or no autoscaling: KEDA does not call the broker.
    'values-tls-secrets.yaml': ['gateway,runner -> 7002/TCP'],
    'values-default.yaml': ['gateway,runner -> 7002/TCP'],
  };
  for (const [file, rules] of Object.entries(expect)) {
    const objects = rendered[file];
    assert.deepEqual(brokerIngress(objects), rules, file);
    // The port KEDA may reach is the one the scaler listens on, the gRPC
    // port the main server's.
    const broker = container(deployment(objects, 'broker'), 'broker');
    const scaler = portNamed(broker, 'scaler');
    const keda = rules.find((r) => r.startsWith('namespace keda'));
    if (keda) {
      assert.equal(flags(broker).get('scaler_listen'), `0.0.0.0:${scaler}`, file);
      assert.ok(keda.endsWith(` -> ${scaler}/TCP`), `${file}: ${keda}`);
      assert.notEqual(scaler, grpcPortOf(broker), `${file}: not on the gRPC port`);
    } else {
      assert.equal(flags(broker).get('scaler_listen'), undefined, `${file}: no scaler`);
      assert.equal(scaler, undefined, file);
      assert.equal(must(objects, 'Service', name('broker')).spec.ports.find((p) => p.name === 'scaler'), undefined);
    }
    assert.ok(rules[0].endsWith(` -> ${grpcPortOf(broker)}/TCP`));
    // The runners reach the gRPC port only.
    if (hasRunner(objects)) {
      const toBroker = must(objects, 'NetworkPolicy', name('runner')).spec.egress[0];
      assert.deepEqual(toBroker.ports, [{ port: grpcPortOf(broker), protocol: 'TCP' }], file);
    }
  }
});

test('TLS from cert-manager: a Certificate per component, mounted, on every link', () => {
  const objects = rendered['values-production.yaml'];
  const certificates = ofKind(objects, 'Certificate');
  assert.deepEqual(certificates.map((c) => c.metadata.name).sort(),
                   ['accounts', 'broker', 'gateway', 'runner'].map(name));
  for (const cert of certificates) {
    assert.deepEqual(cert.spec.issuerRef, { name: 'buildd-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  }
  const brokerCert = must(objects, 'Certificate', name('broker'));
  assert.ok(brokerCert.spec.dnsNames.includes(name('broker')), 'the name the runners dial');
  assert.ok(brokerCert.spec.dnsNames.includes(`${name('broker')}.${NAMESPACE}.svc.cluster.local`));
  assert.ok(brokerCert.spec.usages.includes('server auth') && brokerCert.spec.usages.includes('client auth'));
  assert.deepEqual(must(objects, 'Certificate', name('runner')).spec.usages.slice(-1), ['client auth']);
  checkTls(objects, (component) => must(objects, 'Certificate', name(component)).spec.secretName);
});

test('TLS from the operator\'s Secrets', () => {
  const objects = rendered['values-tls-secrets.yaml'];
  assert.deepEqual(ofKind(objects, 'Certificate'), []);
  checkTls(objects, (component) => `buildd-${component}-cert`);
  const gateway = deployment(objects, 'gateway');
  const f = flags(container(gateway, 'gateway'));
  assert.deepEqual(fileSource(gateway, container(gateway, 'gateway'), f.get('tls_cert')),
                   { secret: 'buildd-public-cert', key: 'tls.crt' }, 'HTTPS with its own certificate');
  assert.equal(f.get('tls_client_cert'), '/etc/buildd/tls/tls.crt', 'and its client certificate');
});

// Servers present their certificate and require a client one; clients
// trust the CA and present theirs; each from its component's Secret.
function checkTls(objects, secretOf) {
  const server = ['tls_cert', 'tls_key', 'tls_client_ca'];
  const client = ['tls_ca', 'tls_client_cert', 'tls_client_key'];
  const expect = { accounts: server, broker: [...server, ...client], gateway: client, runner: client };
  for (const [component, wanted] of Object.entries(expect)) {
    const d = deployment(objects, component);
    const c = container(d, component);
    const f = flags(c);
    for (const flag of wanted) {
      assert.equal(fileSource(d, c, f.get(flag) || '-')?.secret, secretOf(component), `${component} --${flag}`);
    }
  }
  const gateway = flags(container(deployment(objects, 'gateway'), 'gateway'));
  assert.equal(gateway.get('tls_client_ca'), undefined, 'the gateway asks browsers for no certificate');
}

// The metadata keys the broker's scaler reads, from its header's list.
const SCALER_KEYS = (() => {
  const header = readFileSync(join(ROOT, 'services/broker/queue_scaler.h'), 'utf8');
  const list = header.slice(header.indexOf("The trigger's metadata"), header.indexOf('The queue is'));
  return new Set([...list.matchAll(/^\/\/ {3}([A-Za-z]+) /gm)].map((m) => m[1]));
})();

// The broker's trigger of a ScaledObject (external-push) or ScaledJob
// (external: KEDA ignores pushes for a ScaledJob and polls), checked
// against the broker it dials and the runners it counts for.
function checkScalerTrigger(objects, scaled, runner) {
  assert.equal(scaled.spec.triggers.length, 1);
  const [trigger] = scaled.spec.triggers;
  assert.equal(trigger.type, scaled.kind === 'ScaledJob' ? 'external' : 'external-push');
  const { scalerAddress, ...metadata } = trigger.metadata;
  // The broker Service's scaler port, by the name KEDA's namespace resolves.
  const scaler = must(objects, 'Service', name('broker')).spec.ports.find((p) => p.name === 'scaler');
  assert.equal(scalerAddress, `${name('broker')}.${NAMESPACE}.svc.cluster.local:${scaler.port}`);
  assert.deepEqual(Object.keys(metadata).filter((k) => !SCALER_KEYS.has(k)), [], 'keys the broker reads');
  assert.deepEqual([...SCALER_KEYS].sort(),
                   ['accountType', 'labels', 'providers', 'tasksPerRunner', 'workspace'], 'the header\'s list');
  // What the pods are, as the runner's flags say.
  const f = flags(container(runner, 'runner'));
  assert.equal(metadata.labels, f.get('labels') ?? '');
  assert.equal(metadata.workspace, f.get('workspace'));
  assert.equal(metadata.tasksPerRunner, f.get('max_tasks'), 'KEDA\'s target is what one pod takes');
  for (const value of Object.values(trigger.metadata)) assert.equal(typeof value, 'string');
  return trigger;
}

test('KEDA scales the runner Deployment from zero, pushed by the broker', () => {
  const objects = rendered['values-production.yaml'];
  const scaled = must(objects, 'ScaledObject', name('runner'));
  const runner = deployment(objects, 'runner');
  assert.equal(runner.spec.replicas, undefined, 'KEDA owns the replica count');
  assert.deepEqual(scaled.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: name('runner') });
  assert.equal(scaled.spec.minReplicaCount, 0);
  assert.equal(scaled.spec.maxReplicaCount, 20);
  assert.equal(scaled.spec.cooldownPeriod, 300);
  const trigger = checkScalerTrigger(objects, scaled, runner);
  assert.deepEqual(trigger.metadata, {
    scalerAddress: `${name('broker')}.${NAMESPACE}.svc.cluster.local:7004`,
    providers: 'claude',
    labels: 'linux,claude',
    accountType: 'service',
    tasksPerRunner: '1',
  });
  assert.equal(flags(container(runner, 'runner')).get('idle_exit'), undefined, 'a Deployment restarts an exit');
  assert.equal(flags(container(runner, 'runner')).get('once'), undefined);
  // With TLS KEDA dials with the runners' certificate, and the scaler port
  // serves the broker's, which names the address KEDA dials.
  const auth = must(objects, 'TriggerAuthentication', trigger.authenticationRef.name);
  const secret = must(objects, 'Certificate', name('runner')).spec.secretName;
  assert.deepEqual(auth.spec.secretTargetRef.map((r) => `${r.parameter}=${r.name}/${r.key}`).sort(),
                   [`caCert=${secret}/ca.crt`, `tlsClientCert=${secret}/tls.crt`,
                    `tlsClientKey=${secret}/tls.key`]);
  const host = trigger.metadata.scalerAddress.split(':')[0];
  assert.ok(must(objects, 'Certificate', name('broker')).spec.dnsNames.includes(host));
  assert.ok(flags(container(deployment(objects, 'broker'), 'broker')).get('tls_client_ca'),
            'the scaler port takes the broker\'s TLS flags');
  assert.equal(find(rendered['values-default.yaml'], 'ScaledObject', name('runner')), undefined);
  assert.equal(deployment(rendered['values-default.yaml'], 'runner').spec.replicas, 1);
});

test('the trigger follows the runner values: providers, maxTasks, workspace, account type', async () => {
  const { objects } = await render('values-production.yaml', [
    '--set', 'runner.maxTasks=3', '--set', 'runner.autoscaling.providers={command,codex}',
    '--set', 'runner.autoscaling.accountType=user', '--set', 'broker.scalerPort=7444',
    '--set', 'runner.workspace=0b6f2c1e-8d7a-4c3b-9e2f-1a0b9c8d7e6f', '--set', 'runner.labels=null']);
  const runner = deployment(objects, 'runner');
  const trigger = checkScalerTrigger(objects, must(objects, 'ScaledObject', name('runner')), runner);
  assert.deepEqual(trigger.metadata, {
    scalerAddress: `${name('broker')}.${NAMESPACE}.svc.cluster.local:7444`,
    providers: 'command,codex',
    labels: '',
    workspace: '0b6f2c1e-8d7a-4c3b-9e2f-1a0b9c8d7e6f',
    accountType: 'user',
    tasksPerRunner: '3',
  });
  assert.equal(flags(container(runner, 'runner')).get('max_tasks'), '3');
  // No providers named: the key is left out, and the broker counts all.
  const all = await render('values-production.yaml', ['--set', 'runner.autoscaling.providers=null']);
  assert.equal(must(all.objects, 'ScaledObject', name('runner')).spec.triggers[0].metadata.providers, undefined);
});

test('a ScaledJob starts a Job per task: --once, not restarted, never stopped to scale down', () => {
  const objects = rendered['values-scaled-job.yaml'];
  assert.equal(find(objects, 'Deployment', name('runner')), undefined, 'KEDA makes the pods');
  assert.equal(find(objects, 'ScaledObject', name('runner')), undefined);
  const scaled = must(objects, 'ScaledJob', name('runner'));
  const job = scaled.spec.jobTargetRef;
  assert.equal(job.parallelism, 1);
  assert.equal(job.completions, 1);
  assert.equal(job.backoffLimit, 0);
  assert.equal(podSpec(scaled).restartPolicy, 'Never');
  assert.ok(selects(must(objects, 'NetworkPolicy', name('runner')).spec.podSelector,
                    podTemplate(scaled).metadata.labels), 'the runner NetworkPolicy holds its pods');
  const f = flags(container(scaled, 'runner'));
  assert.equal(f.get('once'), '');
  assert.equal(f.get('max_tasks'), '1');
  assert.equal(f.get('idle_exit'), '10m', 'a Job whose task went elsewhere ends');
  assert.ok(podSpec(scaled).terminationGracePeriodSeconds > Number(f.get('drain_timeout_ms')) / 1000);
  assert.equal(scaled.spec.rollout.strategy, 'gradual', 'an upgrade leaves running Jobs be');
  assert.equal(scaled.spec.scalingStrategy.strategy, 'default', 'the metric counts running tasks');
  assert.equal(scaled.spec.maxReplicaCount, 8);
  assert.equal(scaled.spec.successfulJobsHistoryLimit, 2);
  assert.equal(scaled.spec.failedJobsHistoryLimit, 5);
  assert.equal(scaled.spec.cooldownPeriod, undefined, 'not a ScaledJob field');
  const trigger = checkScalerTrigger(objects, scaled, scaled);
  assert.deepEqual(trigger.metadata, {
    scalerAddress: `${name('broker')}.${NAMESPACE}.svc.cluster.local:7100`,
    providers: 'claude,codex',
    labels: 'gpu,linux',
    workspace: '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b',
    accountType: 'service',
    tasksPerRunner: '1',
  });
  assert.equal(trigger.authenticationRef, undefined, 'no TLS here');
});

// A query's label regex, as Prometheus applies it (fully anchored).
function labelMatcher(query, label) {
  const m = new RegExp(`${label}(=~?)"((?:[^"\\\\]|\\\\.)*)"`).exec(query);
  if (!m) return null;
  const value = JSON.parse(`"${m[2]}"`);
  return m[1] === '=' ? (s) => s === value : (s) => new RegExp(`^(?:${value})$`).test(s);
}

test('KEDA can read the queue from Prometheus instead: one replica\'s count, not their sum', async () => {
  const objects = rendered['values-tls-secrets.yaml'];
  const [trigger] = must(objects, 'ScaledObject', name('runner')).spec.triggers;
  assert.equal(trigger.type, 'prometheus');
  assert.equal(trigger.metadata.serverAddress, 'http://prometheus-operated.monitoring.svc:9090');
  assert.equal(trigger.metadata.query,
               'max(sum by (instance) (buildd_broker_pending_tasks{provider=~"codex|command",labels=""}))');
  assert.equal(trigger.metadata.threshold, '2');
  assert.equal(ofKind(objects, 'TriggerAuthentication').length, 0);

  // The pods' labels: tasks that require none, or only some of them.
  const { objects: labelled } = await render('values-tls-secrets.yaml', [
    '--set', 'runner.labels={linux,gpu.a100}', '--set', 'runner.autoscaling.providers=null',
    '--set', 'runner.autoscaling.prometheus.threshold=', '--set', 'runner.maxTasks=2']);
  const [t] = must(labelled, 'ScaledObject', name('runner')).spec.triggers;
  assert.match(t.metadata.query, /^max\(sum by \(instance\) \(buildd_broker_pending_tasks\{[^}]*\}\)\)$/);
  assert.equal(labelMatcher(t.metadata.query, 'provider'), null, 'every provider');
  const takes = labelMatcher(t.metadata.query, 'labels');
  for (const labels of ['', 'linux', 'gpu.a100', 'gpu.a100,linux']) assert.ok(takes(labels), labels);
  for (const labels of ['arm', 'gpu', 'gpuxa100', 'arm,linux', 'gpu.a100,linux,x']) assert.ok(!takes(labels), labels);
  assert.equal(t.metadata.threshold, '2', 'runner.maxTasks by default');

  // A ScaledJob over that metric (waiting tasks only) subtracts the Jobs
  // that have not started, not the running ones.
  const { objects: jobs } = await render('values-scaled-job.yaml', [
    '--set', 'runner.autoscaling.prometheus.serverAddress=http://prometheus:9090']);
  const scaled = must(jobs, 'ScaledJob', name('runner'));
  assert.equal(scaled.spec.triggers[0].type, 'prometheus');
  assert.equal(scaled.spec.scalingStrategy.strategy, 'accurate');
  assert.deepEqual(brokerIngress(jobs), ['gateway,runner -> 7002/TCP']);
});

test('the ServiceMonitor scrapes accounts, brokers and runners on their metrics ports', () => {
  const objects = rendered['values-production.yaml'];
  const monitor = must(objects, 'ServiceMonitor', RELEASE);
  assert.equal(monitor.metadata.labels.release, 'prometheus');
  assert.deepEqual(monitor.spec.namespaceSelector.matchNames, [NAMESPACE]);
  const [endpoint] = monitor.spec.endpoints;
  assert.equal(endpoint.path, '/metrics');
  const scraped = ofKind(objects, 'Service').filter((s) => {
    const component = s.metadata.labels['app.kubernetes.io/component'];
    return selects(monitor.spec.selector, s.metadata.labels) &&
      monitor.spec.selector.matchExpressions[0].values.includes(component);
  });
  assert.deepEqual(scraped.map((s) => s.metadata.name).sort(), ['accounts', 'broker', 'runner'].map(name));
  for (const service of scraped) {
    const port = service.spec.ports.find((p) => p.name === endpoint.port);
    assert.ok(port, `${service.metadata.name} has a ${endpoint.port} port`);
    const component = service.metadata.labels['app.kubernetes.io/component'];
    const c = container(deployment(objects, component), component);
    assert.equal(portNamed(c, port.targetPort), port.port);
    const listen = flags(c).get(component === 'runner' ? 'listen' : 'metrics_listen');
    assert.equal(listen, `0.0.0.0:${port.port}`);
  }
  assert.equal(find(rendered['values-default.yaml'], 'ServiceMonitor', RELEASE), undefined);
});

test('the Ingress serves the gateway with TLS', () => {
  const objects = rendered['values-production.yaml'];
  const ingress = must(objects, 'Ingress', name('gateway'));
  assert.equal(ingress.spec.ingressClassName, 'nginx');
  assert.deepEqual(ingress.spec.tls, [{ secretName: 'buildd-example-com-tls', hosts: ['buildd.example.com'] }]);
  const [rule] = ingress.spec.rules;
  assert.equal(rule.host, 'buildd.example.com');
  const backend = rule.http.paths[0].backend.service;
  assert.equal(backend.name, name('gateway'));
  assert.ok(must(objects, 'Service', name('gateway')).spec.ports.some((p) => p.name === backend.port.name));
  assert.equal(find(rendered['values-default.yaml'], 'Ingress', name('gateway')), undefined);
});

test('the work directory may be a PersistentVolumeClaim', () => {
  const objects = rendered['values-tls-secrets.yaml'];
  const claim = must(objects, 'PersistentVolumeClaim', name('runner-work'));
  assert.equal(claim.spec.storageClassName, 'fast-ssd');
  assert.equal(claim.spec.resources.requests.storage, '200Gi');
  const d = deployment(objects, 'runner');
  const c = container(d, 'runner');
  const source = fileSource(d, c, `${flags(c).get('work_dir')}/tasks`);
  assert.equal(source.volume.persistentVolumeClaim.claimName, claim.metadata.name);
  assert.equal(d.spec.strategy.type, 'Recreate', 'one pod holds the claim at a time');
});

test('a PostgreSQL CA is mounted where the URL names it', () => {
  const objects = rendered['values-production.yaml'];
  for (const w of [deployment(objects, 'accounts'), deployment(objects, 'broker'), must(objects, 'Job', name('migrate'))]) {
    for (const c of containers(w)) {
      assert.deepEqual(fileSource(w, c, '/etc/buildd/postgres/ca.crt'), { secret: 'pg-ca', key: 'ca.crt' },
                       `${w.metadata.name}/${c.name}`);
    }
  }
});

test('no runner: no runner objects and no runner key', () => {
  const objects = rendered['values-no-runner.yaml'];
  assert.deepEqual(objects.filter((o) => o.metadata.labels['app.kubernetes.io/component'] === 'runner'), []);
  assert.equal(must(objects, 'Secret', name('keys')).data['runner-key'], undefined);
});

test('no ServiceAccount token is mounted anywhere', () => {
  for (const file of SETS) {
    for (const sa of ofKind(rendered[file], 'ServiceAccount')) {
      assert.equal(sa.automountServiceAccountToken, false, `${file}: ${sa.metadata.name}`);
    }
    for (const w of workloads(rendered[file])) {
      assert.equal(podSpec(w).automountServiceAccountToken, false, `${file}: ${w.metadata.name}`);
    }
  }
});

test('NOTES shows the port-forward and grpcurl lines', async () => {
  const result = await helm(['install', RELEASE, CHART, '--namespace', NAMESPACE, '--dry-run=client',
                             '-f', join(TESTS, 'values-default.yaml')]);
  assert.equal(result.code, 0, result.stderr);
  const notes = result.stdout.slice(result.stdout.indexOf('NOTES:'));
  assert.match(notes, /kubectl -n agents port-forward svc\/buildd-gateway 8080:8080/);
  assert.match(notes, /kubectl -n agents port-forward svc\/buildd-broker 7002:7002/);
  assert.match(notes, /grpcurl -plaintext 127\.0\.0\.1:7002 list/);
  assert.match(notes, /grpcurl -plaintext -H "authorization: Bearer \$ADMIN_KEY" 127\.0\.0\.1:7002 buildd\.v1\.BrokerService\/ListTasks/);
  assert.match(notes, /get secret buildd-keys -o jsonpath='\{\.data\.admin-key\}'/);
  assert.doesNotMatch(notes, /KEDA/, 'no autoscaling');
});

test('NOTES says where KEDA asks and who may reach the scaler port', async () => {
  const notes = async (file) => {
    const result = await helm(['install', RELEASE, CHART, '--namespace', NAMESPACE, '--dry-run=client',
                               '-f', join(TESTS, file)]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.slice(result.stdout.indexOf('NOTES:')).replace(/\s+/g, ' ');
  };
  const production = await notes('values-production.yaml');
  assert.match(production, /external scaler \(--scaler_listen\) at buildd-broker\.agents\.svc\.cluster\.local:7004/);
  assert.match(production, /only the namespace keda may reach it/);
  assert.match(production, /get scaledobject buildd-runner/);
  const jobs = await notes('values-scaled-job.yaml');
  assert.match(jobs, /runners \(KEDA ScaledJob: up to 8 Jobs of one task each\)/);
  assert.match(jobs, /at buildd-broker\.agents\.svc\.cluster\.local:7100/);
  assert.match(jobs, /only the namespace keda-system may reach it/);
  assert.match(jobs, /get scaledjob buildd-runner/);
  const prometheus = await notes('values-tls-secrets.yaml');
  assert.match(prometheus, /from Prometheus at http:\/\/prometheus-operated\.monitoring\.svc:9090: waiting tasks only/);
  assert.doesNotMatch(prometheus, /scaler_listen/);
});

test('the broker gets its polling lease and GitHub settings, the webhook secret and CA as files', () => {
  const defaults = deployment(rendered['values-default.yaml'], 'broker');
  const plain = flags(container(defaults, 'broker'));
  assert.equal(plain.get('poll_lease_ms'), '300000');
  assert.equal(plain.get('github_api_url'), 'https://api.github.com');
  assert.equal(plain.has('github_webhook_secret_file'), false, 'no secret: deliveries are refused');
  assert.equal(plain.has('github_ca_file'), false);

  const d = deployment(rendered['values-production.yaml'], 'broker');
  const c = container(d, 'broker');
  const f = flags(c);
  assert.equal(f.get('poll_lease_ms'), '120000');
  assert.equal(f.get('github_api_url'), 'https://github.example.com/api/v3');
  assert.equal(f.get('github_timeout_ms'), '10000');
  assert.equal(f.get('github_dispatch_attempts'), '5');
  assert.equal(f.get('github_dispatch_backoff_ms'), '1000');
  assert.deepEqual(fileSource(d, c, f.get('github_webhook_secret_file')), { secret: 'github-webhook', key: 'secret' });
  assert.deepEqual(fileSource(d, c, f.get('github_ca_file')), { secret: 'github-ca', key: 'ca.pem' });
  assert.equal(f.has('github_webhook_secret'), false, 'never on the command line');
});

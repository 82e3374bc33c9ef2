// An upgrade keeps the generated keys: the chart reads its Secret back with
// `lookup`. helm template --dry-run=server renders the way an upgrade does,
// lookup included, against a stand-in API server on 127.0.0.1 that answers
// discovery and holds one Secret (nothing else of a cluster is needed to
// render).

import test from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NAMESPACE, RELEASE, decode, must, name, render } from './lib.mjs';

// The kinds the chart renders with values-default.yaml, by group version.
const RESOURCES = {
  v1: [['secrets', 'Secret'], ['services', 'Service'], ['serviceaccounts', 'ServiceAccount'],
       ['persistentvolumeclaims', 'PersistentVolumeClaim']],
  'apps/v1': [['deployments', 'Deployment']],
  'batch/v1': [['jobs', 'Job']],
  'policy/v1': [['poddisruptionbudgets', 'PodDisruptionBudget']],
  'networking.k8s.io/v1': [['networkpolicies', 'NetworkPolicy'], ['ingresses', 'Ingress']],
};

// Serves discovery and GET of the given Secrets; records every request.
async function startApiServer(secrets) {
  const requests = [];
  const server = createServer((req, res) => {
    const path = req.url.split('?')[0];
    requests.push(`${req.method} ${path}`);
    const reply = (code, body) => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const resourceList = (groupVersion) => ({
      kind: 'APIResourceList', apiVersion: 'v1', groupVersion,
      resources: RESOURCES[groupVersion].map(([plural, kind]) => ({
        name: plural, singularName: kind.toLowerCase(), namespaced: true, kind,
        verbs: ['get', 'list', 'create', 'update', 'patch', 'delete'],
      })),
    });
    const groups = Object.keys(RESOURCES).filter((gv) => gv.includes('/'));
    if (path === '/version') {
      return reply(200, { major: '1', minor: '33', gitVersion: 'v1.33.9', platform: 'linux/amd64' });
    }
    if (path === '/api') return reply(200, { kind: 'APIVersions', versions: ['v1'] });
    if (path === '/api/v1') return reply(200, resourceList('v1'));
    if (path === '/apis') {
      return reply(200, {
        kind: 'APIGroupList', apiVersion: 'v1',
        groups: groups.map((gv) => {
          const [group, version] = gv.split('/');
          const v = { groupVersion: gv, version };
          return { name: group, versions: [v], preferredVersion: v };
        }),
      });
    }
    const gv = groups.find((g) => path === `/apis/${g}`);
    if (gv) return reply(200, resourceList(gv));
    const secret = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && secret && secrets[`${secret[1]}/${secret[2]}`]) {
      // As Helm left it: owned by the release (a kept Secret is adopted
      // again by a new install of the same release).
      return reply(200, {
        apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
        metadata: {
          name: secret[2], namespace: secret[1],
          labels: { 'app.kubernetes.io/managed-by': 'Helm' },
          annotations: { 'meta.helm.sh/release-name': RELEASE, 'meta.helm.sh/release-namespace': secret[1],
                         'helm.sh/resource-policy': 'keep' },
        },
        data: secrets[`${secret[1]}/${secret[2]}`],
      });
    }
    return reply(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = mkdtempSync(join(tmpdir(), 'buildd-chart-kube-'));
  const kubeconfig = join(dir, 'config');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'test',
    clusters: [{ name: 'test', cluster: { server: `http://127.0.0.1:${server.address().port}` } }],
    users: [{ name: 'test', user: { token: 'test' } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'test', namespace: NAMESPACE } }],
  }));
  return {
    kubeconfig,
    requests,
    close() {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Renders values-default.yaml as an upgrade would, against `secrets`.
async function renderAgainst(secrets) {
  const api = await startApiServer(secrets);
  try {
    const { objects } = await render('values-default.yaml',
                                     ['--dry-run=server', '--disable-openapi-validation'],
                                     { kubeconfig: api.kubeconfig });
    return { objects, requests: api.requests };
  } finally {
    api.close();
  }
}

const b64 = (text) => Buffer.from(text).toString('base64');

test('an upgrade keeps every generated key and makes only a missing one', async () => {
  // What an earlier install made; session-key is missing (as after a
  // chart version that added it).
  const earlier = {
    'master-key': b64('0'.repeat(64)),
    'key-pepper': b64('an-earlier-pepper-value'),
    'service-key': b64('s'.repeat(40)),
    'admin-key': b64(`buildd_service_${'a'.repeat(64)}`),
    'runner-key': b64(`buildd_service_${'b'.repeat(64)}`),
  };
  const { objects, requests } = await renderAgainst({ [`${NAMESPACE}/${name('keys')}`]: earlier });
  assert.ok(requests.includes(`GET /api/v1/namespaces/${NAMESPACE}/secrets/${name('keys')}`),
            `lookup asked for the Secret: ${requests.join(', ')}`);
  const keys = must(objects, 'Secret', name('keys'));
  for (const [key, value] of Object.entries(earlier)) {
    assert.equal(keys.data[key], value, `${key} kept`);
  }
  assert.match(decode(keys.data['session-key']), /^[0-9a-f]{64}$/, 'the missing key is generated');
  assert.equal(keys.metadata.annotations['helm.sh/resource-policy'], 'keep');
});

test('a first install against a cluster generates every key', async () => {
  const { objects, requests } = await renderAgainst({});
  assert.ok(requests.includes(`GET /api/v1/namespaces/${NAMESPACE}/secrets/${name('keys')}`));
  const keys = must(objects, 'Secret', name('keys'));
  assert.match(decode(keys.data['master-key']), /^[0-9a-f]{64}$/);
  assert.match(decode(keys.data['admin-key']), /^buildd_service_[0-9a-f]{64}$/);
});

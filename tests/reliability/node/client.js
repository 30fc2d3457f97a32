// An independent client of the Liandong service, written the way another team would: @grpc/grpc-js
// and @grpc/proto-loader reading proto/liandong/v1/*.proto, the health and reflection protos that
// ship with the npm packages, and google/rpc protos for the error details.
//
//   node client.js HOST:PORT PROTO_DIR GOOGLE_PROTOS_DIR
//
// Prints one JSON object with what it saw; tests/reliability/test_clients.py checks it. Exits 1
// (with the error on stderr) if any call fails in a way it did not expect.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const [target, protoDir, googleDir] = process.argv.slice(2);
if (!target || !protoDir || !googleDir) {
  console.error("usage: node client.js HOST:PORT PROTO_DIR GOOGLE_PROTOS_DIR");
  process.exit(2);
}

const options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir, googleDir] };
const load = (file) => grpc.loadPackageDefinition(protoLoader.loadSync(file, options));

const liandong = load("liandong/v1/liandong.proto").liandong.v1;
const health = load(require.resolve("grpc-health-check/proto/health/v1/health.proto")).grpc.health.v1;
const reflectionProto = path.join(path.dirname(require.resolve("@grpc/reflection/package.json")), "build/proto/grpc/reflection/v1alpha/reflection.proto");
const reflection = load(reflectionProto).grpc.reflection.v1alpha;

const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (origin, file) => (file.startsWith("google/protobuf/") ? file : path.join(googleDir, file)); // protobufjs has the well-known types
rpcRoot.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = rpcRoot.lookupType("google.rpc.Status");
const BadRequest = rpcRoot.lookupType("google.rpc.BadRequest");

const credentials = grpc.credentials.createInsecure();
const deadline = () => new Date(Date.now() + 10000);

// google.protobuf.Struct as proto-loader sees it: every value says which kind it is. protobufjs
// bundles the well-known types with camelCase field names, so keepCase does not apply to them.
function struct(facts) {
  const fields = {};
  for (const [name, value] of Object.entries(facts)) {
    if (typeof value === "number") fields[name] = { numberValue: value };
    else if (typeof value === "boolean") fields[name] = { boolValue: value };
    else fields[name] = { stringValue: String(value) };
  }
  return { fields };
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

function badRequest(error) {
  const raw = error.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return null;
  const status = Status.decode(raw);
  const violations = [];
  for (const detail of status.details) {
    if (detail.type_url.endsWith("/google.rpc.BadRequest")) {
      for (const v of BadRequest.decode(detail.value).field_violations) violations.push({ field: v.field, reason: v.reason });
    }
  }
  return { code: status.code, violations };
}

function listServices(client) {
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo({ deadline: deadline() });
    const names = [];
    call.on("data", (reply) => {
      for (const service of (reply.list_services_response || { service: [] }).service) names.push(service.name);
      call.end();
    });
    call.on("error", reject);
    call.on("end", () => resolve(names.sort()));
    call.write({ list_services: "" });
  });
}

async function main() {
  const service = new liandong.ResponseService(target, credentials);
  const out = {};

  const answer = await unary(service, "Determine", {
    incident: { id: "node-1", type: "fire", facts: struct({ deaths: 3, serious_injuries: 12, hazardous_materials: true }) },
  });
  out.determine = {
    decision_id: answer.decision_id,
    ruleset: answer.ruleset,
    version: answer.version,
    content_hash: answer.content_hash,
    level: answer.level && answer.level.code,
    lead: answer.lead_agency && answer.lead_agency.id,
    units: answer.participating_units.map((u) => u.id),
    matched_rules: answer.matched_rules.map((r) => r.id),
    incident_id: answer.incident_id,
  };

  try {
    await unary(service, "Determine", { incident: { type: "fire", facts: struct({ deaths: -1, deathz: 2 }) } });
    out.error = { code: "OK" };
  } catch (error) {
    out.error = { code: error.code, name: grpc.status[error.code], message: error.details, details: badRequest(error) };
  }

  // A plain object where the Struct is due, as a caller new to proto-loader writes it: proto-loader
  // drops it without a word (a Struct's keys live under `fields`), so the service sees no facts and
  // must refuse the report rather than answer it from its defaults.
  try {
    const plain = await unary(service, "Determine", { incident: { type: "fire", facts: { deaths: 30 } } });
    out.plain_object = { code: "OK", level: plain.level && plain.level.code };
  } catch (error) {
    out.plain_object = { code: error.code, name: grpc.status[error.code], message: error.details, details: badRequest(error) };
  }

  const healthClient = new health.Health(target, credentials);
  out.health = {};
  for (const name of ["", "liandong.v1.ResponseService"]) {
    out.health[name || "(server)"] = (await unary(healthClient, "Check", { service: name })).status;
  }

  const reflectionClient = new reflection.ServerReflection(target, credentials);
  out.reflection = await listServices(reflectionClient);
  console.log(JSON.stringify(out));
  for (const client of [service, healthClient, reflectionClient]) client.close();
}

main().catch((error) => {
  console.error(`node client failed: ${error.stack || error}`);
  process.exit(1);
});

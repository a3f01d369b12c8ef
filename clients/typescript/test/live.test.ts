// Against a live tnx CRM gRPC server: CRM_GRPC_TARGET (host:port, plaintext) and CRM_API_KEY
// (a workspace key). tests/typescript runs this with a fresh workspace in CI.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";

import {
  Code,
  ConnectError,
  type CrmClient,
  createCrmClient,
  errorInfo,
  errorReason,
  fieldViolations,
  type Lead,
  pages,
} from "../src/index.js";

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: this test runs against a live server`);
  }
  return value;
}

const baseUrl = `http://${requiredEnv("CRM_GRPC_TARGET")}`;
const apiKey = requiredEnv("CRM_API_KEY");
// A run of its own, so the test also works against a workspace that already has leads.
const run = randomUUID().slice(0, 8);
let crm: CrmClient;

before(() => {
  crm = createCrmClient({ baseUrl, apiKey });
});

after(() => {
  crm.close();
});

/** The ConnectError a call fails with (assert.rejects checks only that it does). */
async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}

test("creates a lead with custom fields and reads it back by id", async () => {
  const created = await crm.leads.createLead({
    lead: {
      email: `jane.${run}@acme.com`,
      firstName: "Jane",
      title: "Head of Growth",
      customFields: { industry: "SaaS", employees: 120 },
    },
  });
  assert.match(created.id, /^lead_/);
  assert.ok(created.createdAt, "the server sets created_at");

  const read = await crm.leads.getLead({ id: created.id });
  assert.equal(read.email, `jane.${run}@acme.com`);
  assert.equal(read.firstName, "Jane");
  assert.equal(read.title, "Head of Growth");
  assert.deepEqual(read.customFields, { industry: "SaaS", employees: 120 });
});

test("lists leads page by page, following next_cursor to the end", async () => {
  const source = `ts-client-${run}`;
  const createdIds: string[] = [];
  for (let i = 0; i < 7; i++) {
    const lead = await crm.leads.createLead({ lead: { email: `p${i}.${run}@acme.com`, source } });
    createdIds.push(lead.id);
  }

  const pageSizes: number[] = [];
  const listed: Lead[] = [];
  for await (const page of pages((cursor) => crm.leads.listLeads({ source, limit: 3, cursor }))) {
    pageSizes.push(page.leads.length);
    listed.push(...page.leads);
  }

  assert.deepEqual(pageSizes, [3, 3, 1]);
  // Creation order, each lead once.
  assert.deepEqual(
    listed.map((lead) => lead.id),
    createdIds,
  );
});

test("an unknown lead is NOT_FOUND with the reason LEAD_NOT_FOUND", async () => {
  const err = await failure(crm.leads.getLead({ id: `lead_unknown${run}` }));
  assert.equal(err.code, Code.NotFound);
  assert.equal(errorReason(err), "LEAD_NOT_FOUND");
  assert.equal(errorInfo(err)?.domain, "crm.tnx");
});

test("an invalid email is INVALID_ARGUMENT naming lead.email", async () => {
  const err = await failure(crm.leads.createLead({ lead: { email: "not-an-email" } }));
  assert.equal(err.code, Code.InvalidArgument);
  const fields = fieldViolations(err).map((violation) => violation.field);
  assert.deepEqual(fields, ["lead.email"]);
});

test("a second lead with the same email in other case is ALREADY_EXISTS (LEAD_EMAIL_TAKEN)", async () => {
  await crm.leads.createLead({ lead: { email: `dup.${run}@acme.com` } });
  const err = await failure(crm.leads.createLead({ lead: { email: `DUP.${run}@Acme.com` } }));
  assert.equal(err.code, Code.AlreadyExists);
  assert.equal(errorReason(err), "LEAD_EMAIL_TAKEN");
});

test("a wrong API key is UNAUTHENTICATED", async () => {
  const stranger = createCrmClient({ baseUrl, apiKey: "tnx_not_a_real_key" });
  try {
    const err = await failure(stranger.leads.listLeads({}));
    assert.equal(err.code, Code.Unauthenticated);
  } finally {
    stranger.close();
  }
});

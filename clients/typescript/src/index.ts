// The tnx CRM client for Node: typed Connect-ES clients for every tnx.crm.v1 service over
// native gRPC (HTTP/2), the API key given once, and helpers for cursor pages and for the
// reason and field violations the server puts in each error.
import { type Client, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import {
  type BadRequest_FieldViolation,
  BadRequestSchema,
  type ErrorInfo,
  ErrorInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import { CompanyService } from "./gen/tnx/crm/v1/company_service_pb.js";
import { EnrichmentService } from "./gen/tnx/crm/v1/enrichment_service_pb.js";
import { EventService } from "./gen/tnx/crm/v1/event_service_pb.js";
import { FormService } from "./gen/tnx/crm/v1/form_service_pb.js";
import { ImportService } from "./gen/tnx/crm/v1/import_service_pb.js";
import { LeadService } from "./gen/tnx/crm/v1/lead_service_pb.js";
import { ScoringService } from "./gen/tnx/crm/v1/scoring_service_pb.js";
import { SegmentService } from "./gen/tnx/crm/v1/segment_service_pb.js";
import { TriggerService } from "./gen/tnx/crm/v1/trigger_service_pb.js";
import { PublicFormService } from "./gen/tnx/public/v1/public_form_service_pb.js";

export { Code, ConnectError } from "@connectrpc/connect";
export * from "./gen/google/rpc/error_details_pb.js";
export * from "./gen/tnx/crm/v1/company_pb.js";
export * from "./gen/tnx/crm/v1/company_service_pb.js";
export * from "./gen/tnx/crm/v1/enrichment_pb.js";
export * from "./gen/tnx/crm/v1/enrichment_service_pb.js";
export * from "./gen/tnx/crm/v1/event_service_pb.js";
export * from "./gen/tnx/crm/v1/form_pb.js";
export * from "./gen/tnx/crm/v1/form_service_pb.js";
export * from "./gen/tnx/crm/v1/import_pb.js";
export * from "./gen/tnx/crm/v1/import_service_pb.js";
export * from "./gen/tnx/crm/v1/lead_pb.js";
export * from "./gen/tnx/crm/v1/lead_service_pb.js";
export * from "./gen/tnx/crm/v1/scoring_pb.js";
export * from "./gen/tnx/crm/v1/scoring_service_pb.js";
export * from "./gen/tnx/crm/v1/segment_pb.js";
export * from "./gen/tnx/crm/v1/segment_service_pb.js";
export * from "./gen/tnx/crm/v1/trigger_pb.js";
export * from "./gen/tnx/crm/v1/trigger_service_pb.js";
export * from "./gen/tnx/public/v1/public_form_service_pb.js";

/** The same default deadline as the Python client: no call waits forever on a lost server. */
const DEFAULT_TIMEOUT_MS = 30_000;

export interface CrmClientOptions {
  /** The gRPC server: `http://127.0.0.1:50051` (plaintext HTTP/2) or an `https://` URL. */
  baseUrl: string;
  /** A workspace API key (`tnx_…`), sent as `authorization: Bearer <key>` on every call. */
  apiKey: string;
  /**
   * Deadline of a call that sets no `timeoutMs` of its own; default 30 seconds. Streams too:
   * a long watch passes `{ timeoutMs: 0 }` (no deadline) as its call options.
   */
  timeoutMs?: number;
}

export interface CrmClient {
  leads: Client<typeof LeadService>;
  companies: Client<typeof CompanyService>;
  segments: Client<typeof SegmentService>;
  imports: Client<typeof ImportService>;
  forms: Client<typeof FormService>;
  publicForms: Client<typeof PublicFormService>;
  events: Client<typeof EventService>;
  scoring: Client<typeof ScoringService>;
  triggers: Client<typeof TriggerService>;
  enrichment: Client<typeof EnrichmentService>;
  /** Closes the HTTP/2 connection; an open one would keep a Node process alive. */
  close(): void;
}

export function createCrmClient(options: CrmClientOptions): CrmClient {
  const authorization = `Bearer ${options.apiKey}`;
  const withKey: Interceptor = (next) => (req) => {
    req.header.set("authorization", authorization);
    return next(req);
  };
  // A session manager of our own, so close() can end the connection it holds.
  const sessionManager = new Http2SessionManager(options.baseUrl);
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    sessionManager,
    interceptors: [withKey],
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return {
    leads: createClient(LeadService, transport),
    companies: createClient(CompanyService, transport),
    segments: createClient(SegmentService, transport),
    imports: createClient(ImportService, transport),
    forms: createClient(FormService, transport),
    publicForms: createClient(PublicFormService, transport),
    events: createClient(EventService, transport),
    scoring: createClient(ScoringService, transport),
    triggers: createClient(TriggerService, transport),
    enrichment: createClient(EnrichmentService, transport),
    close: () => sessionManager.abort(),
  };
}

/**
 * Every page of a cursor-paginated call, following `nextCursor` until it is empty:
 * `for await (const page of pages((cursor) => crm.leads.listLeads({ limit: 100, cursor })))`.
 */
export async function* pages<Page extends { nextCursor: string }>(
  fetchPage: (cursor: string) => Promise<Page>,
): AsyncGenerator<Page, void, undefined> {
  let cursor = "";
  do {
    const page = await fetchPage(cursor);
    yield page;
    cursor = page.nextCursor;
  } while (cursor !== "");
}

/** The google.rpc.ErrorInfo of a failed call (reason such as `LEAD_NOT_FOUND`, domain `crm.tnx`). */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  return ConnectError.from(err).findDetails(ErrorInfoSchema)[0];
}

/** The machine-readable reason of a failed call, e.g. `LEAD_EMAIL_TAKEN`. */
export function errorReason(err: unknown): string | undefined {
  return errorInfo(err)?.reason;
}

/** The google.rpc.BadRequest field violations of an INVALID_ARGUMENT (or other) error. */
export function fieldViolations(err: unknown): BadRequest_FieldViolation[] {
  return ConnectError.from(err)
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) => badRequest.fieldViolations);
}

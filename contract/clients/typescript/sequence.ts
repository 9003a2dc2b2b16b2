// One call sequence through the TypeScript client generated from the
// OpenAPI document: `edge-quota.ts` is written by openapi-typescript at test
// time (never committed), openapi-fetch makes the calls, and `tsc --strict`
// checks every path, body and answer against the document's types before
// this runs.
//
//   node out/sequence.js BASE_URL TOKEN
//
// Exits non-zero (an uncaught error) at the first answer that differs from
// what the document promises.
import createClient from "openapi-fetch";
import type { components, paths } from "./edge-quota.js";

type Refused = components["schemas"]["Refused"];

const [baseUrl, token] = process.argv.slice(2);
if (!baseUrl || !token) {
  throw new Error("usage: node out/sequence.js BASE_URL TOKEN");
}

function check(ok: boolean, what: string, seen: unknown): void {
  if (!ok) {
    throw new Error(`${what}; seen: ${JSON.stringify(seen)}`);
  }
  console.log(`ok: ${what}`);
}

const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${token}` },
});

// A tenant of 3 messages a day, and a team under it of 2.
const tenant = await client.PUT("/api/v1/quotas/{id}", {
  params: { path: { id: "ts-tenant" } },
  body: { limits: { messages: { max: 3 } }, name: "TypeScript tenant" },
});
check(tenant.response.status === 201 && tenant.data?.id === "ts-tenant", "PUT creates the tenant (201)", tenant.data ?? tenant.error);

const team = await client.POST("/api/v1/quotas/{id}/allocate", {
  params: { path: { id: "ts-tenant" } },
  body: { id: "ts-team", limits: { messages: { max: 2 } } },
});
check(team.response.status === 201 && team.data?.parent === "ts-tenant", "allocate creates the team under it (201)", team.data ?? team.error);

// Consume on the team until it refuses.
let refused: Refused | undefined;
let retryAfterHeader: string | null = null;
let allowed = 0;
const remaining: (string | null)[] = [];
for (let call = 0; call < 10 && refused === undefined; call++) {
  const answer = await client.POST("/api/v1/quotas/{id}/consume", {
    params: { path: { id: "ts-team" } },
    body: { usage: { messages: 1 } },
  });
  if (answer.response.status === 200 && answer.data?.allowed === true) {
    allowed++;
    remaining.push(answer.response.headers.get("RateLimit")?.replace(/;t=\d+$/, "") ?? null);
  } else if (answer.response.status === 429 && answer.error && "retry_after_secs" in answer.error) {
    refused = answer.error;
    retryAfterHeader = answer.response.headers.get("Retry-After");
  } else {
    throw new Error(`consume answered ${answer.response.status}: ${JSON.stringify(answer.error)}`);
  }
}
check(allowed === 2, "the team's 2 messages are counted", allowed);
check(
  remaining.join(" | ") === '"messages";r=1 | "messages";r=0',
  "RateLimit counts down what is left: r=1, then r=0",
  remaining,
);
check(refused !== undefined && refused.reason === "quota_exhausted" && refused.resource === "messages", "the third is refused: 429 quota_exhausted on messages", refused);
const secs = refused?.retry_after_secs ?? null;
check(secs !== null && secs >= 1 && secs <= 86_400, "retry_after_secs is within the day", secs);
check(retryAfterHeader === String(secs), "Retry-After equals retry_after_secs", retryAfterHeader);

// The tenant sees its team's usage.
const read = await client.GET("/api/v1/quotas/{id}", {
  params: { path: { id: "ts-tenant" } },
});
const messages = read.data?.resources["messages"];
check(messages?.subtree_used === 2 && messages.allocated === 2 && messages.available === 1, "the tenant rolls up the team: subtree_used 2, allocated 2, available 1", messages);

// Typed errors: an unknown node, and a caller without a token.
const missing = await client.POST("/api/v1/quotas/{id}/consume", {
  params: { path: { id: "ts-nobody" } },
  body: { usage: { messages: 1 } },
});
check(missing.response.status === 404 && missing.error?.error.code === "node_not_found", "an unknown node is 404 node_not_found", missing.error);

const anonymous = createClient<paths>({ baseUrl });
const denied = await anonymous.GET("/api/v1/quotas/{id}", {
  params: { path: { id: "ts-tenant" } },
});
check(denied.response.status === 401 && denied.error?.error.code === "unauthenticated", "no token is 401 unauthenticated", denied.error);

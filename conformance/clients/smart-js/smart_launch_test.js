#!/usr/bin/env node
// A SMART App Launch standalone launch against Musubi, driven by the official SMART JS client
// (npm `fhirclient`, Node entry). This process plays both sides a PHR app needs: a tiny app
// server on the host and port of MUSUBI_REDIRECT_URI (its /launch route calls fhirclient's
// authorize(), its callback route calls ready()), and the parent's browser (follows the
// redirects, fills in Musubi's sign-in form). The client that ready() returns is then checked
// against what a parent may and may not see. One line per check; exit 1 at the first failure.
//
// Environment (see README.md):
//   MUSUBI_BASE           server root, e.g. http://127.0.0.1:8080 (the FHIR base is MUSUBI_BASE/fhir)
//   MUSUBI_CLIENT_ID      a public phr-app client registered with MUSUBI_REDIRECT_URI
//   MUSUBI_REDIRECT_URI   an http:// loopback URL; this script listens on its host and port
//   MUSUBI_USERNAME, MUSUBI_PASSWORD   a parent account ([[auth.users]])
//   MUSUBI_PATIENT        the id of a child linked to that parent (RelatedPerson)
//   MUSUBI_OTHER_PATIENT  the id of another family's child
//   MUSUBI_SCOPE          optional; default "launch/patient patient/*.rs fhirUser offline_access"
//   MUSUBI_REFRESH_WITH_CLIENT_ID  optional; "1" makes fhirclient send client_id on refresh
//                         (its refreshTokenWithClientId option; off by default, as in fhirclient)
//   NODE_EXTRA_CA_CERTS   optional; the CA of an HTTPS server (Node reads it at start-up)
"use strict";

const http = require("node:http");
const https = require("node:https");
const crypto = require("node:crypto");
const smart = require("fhirclient/lib/entry/node");

// ---------------------------------------------------------------------------------------------
// Inputs

function required(name) {
    const value = process.env[name];
    if (!value) {
        console.error(`FAIL  environment: ${name} is not set`);
        process.exit(2);
    }
    return value;
}

const base = required("MUSUBI_BASE").replace(/\/+$/, "");
const iss = `${base}/fhir`;
const clientId = required("MUSUBI_CLIENT_ID");
const redirectUri = required("MUSUBI_REDIRECT_URI");
const username = required("MUSUBI_USERNAME");
const password = required("MUSUBI_PASSWORD");
const patientId = required("MUSUBI_PATIENT");
const otherPatientId = required("MUSUBI_OTHER_PATIENT");
// Musubi issues no id_token, so `openid` is not asked for (it would only be dropped).
const scope = process.env.MUSUBI_SCOPE || "launch/patient patient/*.rs fhirUser offline_access";
const refreshWithClientId = process.env.MUSUBI_REFRESH_WITH_CLIENT_ID === "1";

const redirect = new URL(redirectUri);
if (redirect.protocol !== "http:") {
    console.error(`FAIL  environment: MUSUBI_REDIRECT_URI must be http:// (this script serves it), got ${redirectUri}`);
    process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Reporting

let passed = 0;

function pass(name, detail) {
    passed += 1;
    console.log(`ok    ${name}${detail ? ` (${detail})` : ""}`);
}

class CheckFailed extends Error {}

function fail(name, detail) {
    console.log(`FAIL  ${name}: ${detail}`);
    throw new CheckFailed(name);
}

function check(condition, name, detail, failure) {
    if (condition) {
        pass(name, detail);
    } else {
        fail(name, failure);
    }
}

/** An error's message plus the body of an HTTP error (fhirclient's HttpError can read it). */
async function describe(error) {
    if (error && typeof error.parse === "function") {
        await error.parse();
    }
    return error && error.message ? error.message.replace(/\s+/g, " ").slice(0, 600) : String(error);
}

// ---------------------------------------------------------------------------------------------
// The parent's browser: plain HTTP(S) requests that do not follow redirects, one cookie jar.

const cookies = new Map();

function request(url, { method = "GET", headers = {}, body } = {}) {
    const target = new URL(url);
    const transport = target.protocol === "https:" ? https : http;
    const jar = [...cookies.entries()].map(([k, v]) => `${k}=${v}`).join("; ");
    const allHeaders = { accept: "text/html,application/json", ...headers };
    if (jar) allHeaders.cookie = jar;
    if (body !== undefined) allHeaders["content-length"] = Buffer.byteLength(body);
    return new Promise((resolve, reject) => {
        const req = transport.request(target, { method, headers: allHeaders, timeout: 30000 }, (res) => {
            const chunks = [];
            res.on("data", (c) => chunks.push(c));
            res.on("end", () => {
                for (const line of [].concat(res.headers["set-cookie"] || [])) {
                    const [pair] = line.split(";");
                    const eq = pair.indexOf("=");
                    if (eq > 0) cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
                }
                resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") });
            });
        });
        req.on("timeout", () => req.destroy(new Error(`timed out: ${method} ${url}`)));
        req.on("error", reject);
        if (body !== undefined) req.write(body);
        req.end();
    });
}

function unescapeHtml(text) {
    return text
        .replace(/&quot;/g, '"')
        .replace(/&#39;/g, "'")
        .replace(/&lt;/g, "<")
        .replace(/&gt;/g, ">")
        .replace(/&amp;/g, "&");
}

/** The first <form> of a page: its method, action and the name/value of its hidden inputs. */
function parseForm(html, pageUrl) {
    const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
    if (!form) return null;
    const attr = (tag, name) => {
        const m = new RegExp(`\\b${name}\\s*=\\s*"([^"]*)"`, "i").exec(tag);
        return m ? unescapeHtml(m[1]) : null;
    };
    const fields = [];
    const inputs = form[2].match(/<input\b[^>]*>/gi) || [];
    for (const input of inputs) {
        if ((attr(input, "type") || "").toLowerCase() === "hidden" && attr(input, "name")) {
            fields.push([attr(input, "name"), attr(input, "value") || ""]);
        }
    }
    return {
        method: (attr(form[1], "method") || "get").toUpperCase(),
        action: new URL(attr(form[1], "action") || pageUrl, pageUrl).href,
        fields,
        hasPassword: /name="password"/.test(form[2]),
        patients: inputs.filter((i) => attr(i, "name") === "patient").map((i) => attr(i, "value")),
    };
}

function formBody(pairs) {
    return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
}

// ---------------------------------------------------------------------------------------------
// The app: fhirclient's Node adapter needs a request (for the current URL and host) and a
// response (for its 302), plus a storage for the launch state, kept here per session cookie.

const sessions = new Map();

class SessionStorage {
    constructor(session) {
        this.session = session;
    }
    async get(key) {
        return this.session[key];
    }
    async set(key, value) {
        this.session[key] = value;
        return value;
    }
    async unset(key) {
        if (Object.prototype.hasOwnProperty.call(this.session, key)) {
            delete this.session[key];
            return true;
        }
        return false;
    }
}

function sessionOf(req, res) {
    const sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie || "");
    if (sid && sessions.has(sid[1])) return sessions.get(sid[1]);
    const id = crypto.randomUUID();
    const session = {};
    sessions.set(id, session);
    res.setHeader("set-cookie", `sid=${id}; Path=/; HttpOnly`);
    return session;
}

let settle;
const launched = new Promise((resolve, reject) => {
    settle = { resolve, reject };
});
// A failure in /launch is reported through the browser's side; this keeps it from also
// ending the process as an unhandled rejection before the callback awaits it.
launched.catch(() => {});

function startApp() {
    const server = http.createServer(async (req, res) => {
        const path = new URL(req.url, "http://app").pathname;
        const storage = new SessionStorage(sessionOf(req, res));
        const api = smart(req, res, storage);
        if (refreshWithClientId) api.options.refreshTokenWithClientId = true;
        try {
            if (path === "/launch") {
                await api.authorize({ iss, clientId, scope, redirectUri, pkceMode: "required" });
            } else if (path === redirect.pathname) {
                const client = await api.ready();
                res.writeHead(200, { "content-type": "text/plain" });
                res.end("signed in");
                settle.resolve(client);
            } else {
                res.writeHead(404).end();
            }
        } catch (error) {
            if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
            res.end(String(error && error.message));
            settle.reject(error);
        }
    });
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(Number(redirect.port || 80), redirect.hostname, () => resolve(server));
    });
}

// ---------------------------------------------------------------------------------------------
// The launch

async function signIn() {
    const appOrigin = redirect.origin;
    // 1. The parent opens the app; fhirclient reads the SMART configuration and redirects.
    const launch = await request(`${appOrigin}/launch`);
    if (launch.status !== 302) fail("authorize() redirects to the authorization server", `${launch.status} ${launch.text}`);
    const authorizeUrl = new URL(launch.headers.location);
    const q = authorizeUrl.searchParams;
    check(
        authorizeUrl.href.startsWith(`${base}/oauth/authorize?`),
        "authorize() found the endpoint via /fhir/.well-known/smart-configuration",
        `${authorizeUrl.origin}${authorizeUrl.pathname}`,
        `redirected to ${authorizeUrl.href}`,
    );
    check(
        q.get("code_challenge_method") === "S256" && !!q.get("code_challenge") && q.get("aud") === iss
            && q.get("client_id") === clientId && q.get("redirect_uri") === redirectUri && !!q.get("state"),
        "the authorization request carries PKCE S256, aud, state and the redirect URI",
        `aud=${q.get("aud")}`,
        authorizeUrl.search,
    );

    // 2. Musubi's sign-in page, then the form posted back with the parent's credentials.
    const page = await request(authorizeUrl.href);
    const form = page.status === 200 ? parseForm(page.text, authorizeUrl.href) : null;
    check(form && form.hasPassword && form.method === "POST", "the sign-in page shows a password form",
        `${form ? form.fields.length : 0} hidden fields`, `${page.status} ${page.text.slice(0, 300)}`);
    let answer = await request(form.action, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: formBody([...form.fields, ["username", username], ["password", password]]),
    });
    // A parent with several children chooses one; pick the expected child.
    if (answer.status === 200) {
        const choice = parseForm(answer.text, form.action);
        if (!choice || !choice.patients.includes(patientId)) {
            fail("sign-in", `no redirect and ${patientId} is not offered: ${answer.text.slice(0, 300)}`);
        }
        pass("the child-choice page offers the expected child", `${choice.patients.length} children`);
        answer = await request(choice.action, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: formBody([...choice.fields, ["patient", patientId]]),
        });
    }
    const location = answer.headers.location || "";
    check(answer.status === 302 && location.startsWith(redirectUri) && new URL(location).searchParams.get("code"),
        "sign-in redirects to the app with a code", `state=${location && new URL(location).searchParams.get("state") === q.get("state") ? "echoed" : "MISSING"}`,
        `${answer.status} ${location || answer.text.slice(0, 300)}`);
    check(new URL(location).searchParams.get("state") === q.get("state"), "the state is returned unchanged", "", location);

    // 3. The browser lands on the app's redirect URI; ready() exchanges the code (PKCE).
    const callback = request(location).then((r) => {
        if (r.status !== 200) throw new Error(`callback answered ${r.status}: ${r.text}`);
    });
    const [client] = await Promise.all([launched, callback]);
    return client;
}

async function main() {
    const app = await startApp();
    try {
        let client;
        try {
            client = await signIn();
        } catch (error) {
            if (error instanceof CheckFailed) throw error;
            fail("the launch completes and ready() returns a client", await describe(error));
        }
        const tokens = client.state.tokenResponse;
        pass("ready() exchanged the code for tokens", `scope: ${tokens.scope}`);
        check(typeof tokens.refresh_token === "string" && tokens.refresh_token.length > 0,
            "offline_access yields a refresh token", "", JSON.stringify(Object.keys(tokens)));

        check(client.patient.id === patientId, "client.patient.id is the parent's child", client.patient.id,
            `expected ${patientId}, got ${client.patient.id}`);

        await run("client.patient.read() returns the child", async () => {
            const patient = await client.patient.read();
            if (patient.resourceType !== "Patient" || patient.id !== patientId) {
                throw new Error(`got ${patient.resourceType}/${patient.id}`);
            }
            return `Patient/${patient.id}`;
        });

        await run("Immunization?patient=<child> returns the child's records", async () => {
            const bundle = await client.request(`Immunization?patient=${encodeURIComponent(patientId)}`);
            const entries = (bundle.entry || []).map((e) => e.resource);
            if (bundle.resourceType !== "Bundle") throw new Error(`got ${bundle.resourceType}`);
            if (entries.length === 0) throw new Error("the Bundle has no entries");
            const strays = entries.filter((r) => r.resourceType !== "Immunization" || (r.patient && r.patient.reference) !== `Patient/${patientId}`);
            if (strays.length) throw new Error(`entries of another patient: ${strays.map((r) => `${r.resourceType}/${r.id}`).join(", ")}`);
            return `${entries.length} Immunization`;
        });

        await run("another family's child is not found (404)", async () => {
            await expectStatus(client.request(`Patient/${encodeURIComponent(otherPatientId)}`), 404);
            return `Patient/${otherPatientId}`;
        });

        await run("another family's Immunizations are not searchable", async () => {
            const bundle = await client.request(`Immunization?patient=${encodeURIComponent(otherPatientId)}`);
            const n = (bundle.entry || []).length;
            if (n !== 0 || (bundle.total !== undefined && bundle.total !== 0)) throw new Error(`${n} entries, total ${bundle.total}`);
            return "0 entries";
        });

        const before = { access: tokens.access_token, refresh: tokens.refresh_token };
        await run("client.refresh() rotates the tokens", async () => {
            try {
                await client.refresh();
            } catch (error) {
                const message = await describe(error);
                // SMART's refresh request has no client_id, and fhirclient sends none for a
                // public client unless told to: name the cause when a server insists on it.
                const hint = /client_id/.test(message) && !refreshWithClientId
                    ? " [fhirclient sends no client_id on a public client's refresh, as SMART App Launch allows]"
                    : "";
                throw new Error(message + hint);
            }
            const now = client.state.tokenResponse;
            if (!now.access_token || now.access_token === before.access) throw new Error("no new access token");
            if (!now.refresh_token || now.refresh_token === before.refresh) throw new Error("the refresh token was not rotated");
            return "new access and refresh token";
        });

        await run("the refreshed access token works", async () => {
            // fhirclient sends the token it now holds, the refreshed one.
            const patient = await client.request(`Patient/${encodeURIComponent(patientId)}`, { useRefreshToken: false });
            if (patient.id !== patientId) throw new Error(`got Patient/${patient.id}`);
            return `Patient/${patient.id}`;
        });

        console.log(`${passed} passed, 0 failed`);
    } finally {
        app.close();
    }
}

async function run(name, body) {
    let detail;
    try {
        detail = await body();
    } catch (error) {
        fail(name, await describe(error));
    }
    pass(name, detail);
}

async function expectStatus(promise, status) {
    try {
        const value = await promise;
        throw new Error(`expected ${status}, got a ${value && value.resourceType}`);
    } catch (error) {
        if (error.status === status) return;
        if (error.status) throw new Error(`expected ${status}, got ${error.status}: ${await describe(error)}`);
        throw error;
    }
}

// A server that stops answering must not hang the run.
setTimeout(() => {
    console.log("FAIL  the run did not finish within 120 s");
    console.log(`${passed} passed, 1 failed`);
    process.exit(1);
}, 120000).unref();

main().then(
    () => process.exit(0),
    async (error) => {
        if (!(error instanceof CheckFailed)) console.log(`FAIL  unexpected error: ${await describe(error)}`);
        console.log(`${passed} passed, 1 failed`);
        process.exit(1);
    },
);

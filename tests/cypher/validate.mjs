#!/usr/bin/env node
// Validate Cypher statements with Neo4j's own Cypher front end, offline.
//
// Usage:  echo '["MATCH (n) RETURN n", "MATCH (n RETURN n"]' | node validate.mjs [--cypher-version 5|25]
//
// stdin:  a JSON array of strings (one Cypher statement each).
// stdout: a JSON array with one entry per input statement, in order:
//           {"ok": bool,
//            "errors":   [{"message": str, "line": int, "offset": int}],
//            "warnings": [{"message": str, "line": int, "offset": int}]}
//         "ok" is true iff "errors" is empty (warnings, e.g. deprecations, do not fail).
//         "line" is 1-based; "offset" is the 0-based character offset (UTF-16 code
//         units, as in JavaScript) of the error inside the statement.
// exit:   0 when the batch was processed (even if statements are invalid);
//         2 on bad input (stdin not a JSON array of strings, bad arguments).
//
// The checks come from lintCypherQuery() of @neo4j-cypher/language-support: the
// ANTLR grammar Neo4j generates from its own parser, plus Neo4j's semantic analysis
// (the Cypher front end compiled to JavaScript), e.g. "Variable `x` not defined".
// It is called with an empty database schema, so nothing depends on a live database:
// labels, properties, functions and procedures are not checked against a schema.
// The only schema-dependent *error* it emits with an empty schema is
// "Parameter $x is not defined." for every $parameter; that is dropped with the
// package's own isNotParamError() filter (parameters are supplied at run time).

// Keep stdout clean for the JSON result: anything the library logs goes to stderr.
for (const level of ['log', 'info', 'debug', 'warn']) {
  console[level] = (...args) => console.error(...args);
}

const { lintCypherQuery, isNotParamError, parseStatementsStrs } = await import(
  '@neo4j-cypher/language-support'
);

// DiagnosticSeverity from the Language Server Protocol.
const SEVERITY_ERROR = 1;
const SEVERITY_WARNING = 2;

function fail(message) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  let cypherVersion = 'CYPHER 5';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let value;
    if (arg === '--cypher-version') value = argv[++i];
    else if (arg.startsWith('--cypher-version=')) value = arg.split('=', 2)[1];
    else fail(`unknown argument ${JSON.stringify(arg)}`);
    if (value === '5' || value === '25') cypherVersion = `CYPHER ${value}`;
    else fail(`--cypher-version must be 5 or 25, got ${JSON.stringify(value)}`);
  }
  return { cypherVersion };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function toEntry(diagnostic) {
  return {
    message: diagnostic.message,
    line: diagnostic.range.start.line + 1,
    offset: diagnostic.offsets.start,
  };
}

// The language service accepts a script of ';'-separated statements, but a Neo4j
// driver's session.run()/tx.run() takes exactly one (a trailing ';' is fine); the
// server rejects more with the message below.
function multipleStatementErrors(statement) {
  const chunks = parseStatementsStrs(statement);
  if (chunks.length <= 1) return [];
  const found = statement.indexOf(chunks[1].trimStart(), chunks[0].length);
  const offset = found >= 0 ? found : 0;
  return [
    {
      message: `Expected exactly one statement per query but got: ${chunks.length}`,
      line: statement.slice(0, offset).split('\n').length,
      offset,
    },
  ];
}

function validateStatement(statement, cypherVersion) {
  if (statement.trim().length === 0) {
    return {
      ok: false,
      errors: [{ message: 'Empty statement', line: 1, offset: 0 }],
      warnings: [],
    };
  }
  let diagnostics;
  try {
    ({ diagnostics } = lintCypherQuery(
      statement,
      { defaultLanguage: cypherVersion },
      // The backend sends plain Cypher; ":param"-style console commands are errors.
      { consoleCommandsEnabled: false },
    ));
  } catch (err) {
    return {
      ok: false,
      errors: [
        { message: `validator crashed: ${err?.stack ?? err}`, line: 1, offset: 0 },
      ],
      warnings: [],
    };
  }
  diagnostics = diagnostics.filter(isNotParamError);
  // Anything not marked as a warning/information/hint counts as an error.
  const errors = diagnostics
    .filter((d) => d.severity === SEVERITY_ERROR || d.severity === undefined)
    .map(toEntry);
  errors.push(...multipleStatementErrors(statement));
  const warnings = diagnostics
    .filter((d) => d.severity === SEVERITY_WARNING)
    .map(toEntry);
  return { ok: errors.length === 0, errors, warnings };
}

const { cypherVersion } = parseArgs(process.argv.slice(2));
let statements;
try {
  statements = JSON.parse(await readStdin());
} catch (err) {
  fail(`stdin is not valid JSON: ${err.message}`);
}
if (!Array.isArray(statements) || !statements.every((s) => typeof s === 'string')) {
  fail('stdin must be a JSON array of strings');
}

// Neo4j's semantic analysis costs ~50 ms a statement; validate repeated ones once.
const cache = new Map();
const results = statements.map((s) => {
  if (!cache.has(s)) cache.set(s, validateStatement(s, cypherVersion));
  return cache.get(s);
});
process.stdout.write(JSON.stringify(results) + '\n');

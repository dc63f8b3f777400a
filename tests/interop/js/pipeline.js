#!/usr/bin/env node
// A 3-step pipeline emitted as mltrace runs by the official OpenTelemetry JS SDK, no mltrace code:
// the span conventions (mltrace_otel/conventions.py) are the whole contract.
//
//   node pipeline.js KIND [ENDPOINT]
//
// KIND is the OTLP exporter: proto (http/protobuf), json (http/json) or grpc. ENDPOINT is the
// collector's base URL (default $OTEL_EXPORTER_OTLP_ENDPOINT, else http://127.0.0.1:4318, or
// :4317 for grpc); the HTTP exporters post to ENDPOINT/v1/traces.
//
// Runs ingest -> js-KIND/raw.csv -> clean -> js-KIND/clean.csv -> report -> js-KIND/report.txt,
// one root span each, no links (lineage comes from the IO attributes alone). clean's staleness
// threshold is 3600.5, a JS number that is not an integer, so OTLP carries it as a double.
//
// Prints one JSON line {"kind", "exported", "runs": {component: span id}} and exits 0 when every
// span was acknowledged; exits 1 (reason on stderr) when an export failed. The JS SDK only logs
// export failures, so the exporter is wrapped and its results counted.
'use strict';

const crypto = require('node:crypto');
const { diag, DiagConsoleLogger, DiagLogLevel, SpanStatusCode, trace } = require('@opentelemetry/api');
const { ExportResultCode } = require('@opentelemetry/core');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');

const EXPORTERS = {
  proto: () => require('@opentelemetry/exporter-trace-otlp-proto'),
  json: () => require('@opentelemetry/exporter-trace-otlp-http'),
  grpc: () => require('@opentelemetry/exporter-trace-otlp-grpc'),
  // the protobuf exporter with gzip: a chunked body that is also Content-Encoding: gzip
  'proto-gzip': () => require('@opentelemetry/exporter-trace-otlp-proto'),
};

// mltrace_otel/conventions.py
const COMPONENT_NAME = 'mltrace.component.name';
const COMPONENT_OWNER = 'mltrace.component.owner';
const COMPONENT_DESCRIPTION = 'mltrace.component.description';
const COMPONENT_TAGS = 'mltrace.component.tags';
const RUN_INPUTS = 'mltrace.run.inputs';
const RUN_OUTPUTS = 'mltrace.run.outputs';
const RUN_INPUT_VERSIONS = 'mltrace.run.input_versions';
const RUN_OUTPUT_VERSIONS = 'mltrace.run.output_versions';
const RUN_INPUT_TYPES = 'mltrace.run.input_types';
const RUN_OUTPUT_TYPES = 'mltrace.run.output_types';
const RUN_STALENESS_THRESHOLD_S = 'mltrace.run.staleness_threshold_s';
const RUN_NOTES = 'mltrace.run.notes';
const CODE_FUNCTION = 'code.function.name';
const CODE_FILE = 'code.file.path';
const EVENT_TEST = 'mltrace.test';

function fail(message) {
  process.stderr.write(`pipeline.js: ${message}\n`);
  process.exit(1);
}

// Counts what the wrapped exporter delivered; a failed export is remembered, not just logged.
class CheckedExporter {
  constructor(inner) {
    this.inner = inner;
    this.exported = 0;
    this.failures = [];
  }

  export(spans, resultCallback) {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        this.exported += spans.length;
      } else {
        this.failures.push(result.error ? String(result.error.stack || result.error) : 'export failed');
      }
      resultCallback(result);
    });
  }

  forceFlush() {
    return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve();
  }

  shutdown() {
    return this.inner.shutdown();
  }
}

const fingerprint = (text) => crypto.createHash('sha256').update(text).digest('hex').slice(0, 32);
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const [kind, endpointArg] = process.argv.slice(2);
  if (!EXPORTERS[kind]) fail(`usage: node pipeline.js proto|proto-gzip|json|grpc [ENDPOINT] (got ${kind})`);
  const fallback = kind === 'grpc' ? 'http://127.0.0.1:4317' : 'http://127.0.0.1:4318';
  const endpoint = (endpointArg || process.env.OTEL_EXPORTER_OTLP_ENDPOINT || fallback).replace(/\/+$/, '');
  const url = kind === 'grpc' ? endpoint : `${endpoint}/v1/traces`;

  diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);
  const { OTLPTraceExporter } = EXPORTERS[kind]();
  const options = { url, timeoutMillis: 10000 };
  if (kind.endsWith('-gzip')) options.compression = 'gzip';
  const exporter = new CheckedExporter(new OTLPTraceExporter(options));
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'mltrace-js-interop' }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 60000 })],
  });
  const tracer = provider.getTracer('mltrace-js-interop', '1.0.0');

  const pointer = (name) => `js-${kind}/${name}`;
  const runs = {};
  const data = {};

  // One component run: a root span named after the component, carrying the mltrace attributes.
  async function step(component, fn, { inputs, outputs, threshold, test }) {
    const span = tracer.startSpan(component, { root: true });
    const results = fn(...inputs.map((p) => data[p]));
    outputs.forEach((p, i) => { data[p] = results[i]; });
    span.setAttributes({
      [COMPONENT_NAME]: component,
      [COMPONENT_OWNER]: 'js-team',
      [COMPONENT_DESCRIPTION]: `${component} step of the JS interop pipeline`,
      [COMPONENT_TAGS]: ['js', 'interop', kind],
      [RUN_INPUTS]: inputs,
      [RUN_INPUT_VERSIONS]: inputs.map((p) => fingerprint(data[p])),
      [RUN_INPUT_TYPES]: inputs.map(() => 'DATA'),
      [RUN_OUTPUTS]: outputs,
      [RUN_OUTPUT_VERSIONS]: outputs.map((p) => fingerprint(data[p])),
      [RUN_OUTPUT_TYPES]: outputs.map(() => 'DATA'),
      [RUN_NOTES]: `sent by @opentelemetry/exporter-trace-otlp-${kind === 'json' ? 'http' : kind}`,
      [CODE_FUNCTION]: fn.name,
      [CODE_FILE]: __filename,
    });
    if (threshold !== undefined) span.setAttribute(RUN_STALENESS_THRESHOLD_S, threshold);
    if (test) {
      span.addEvent(EVENT_TEST, {
        'mltrace.test.name': test, 'mltrace.test.method': `test${test}`, 'mltrace.test.phase': 'after',
        'mltrace.test.passed': true, 'mltrace.test.message': '',
      });
    }
    await pause(5); // a run has a duration, and the next one starts strictly later
    span.setStatus({ code: SpanStatusCode.OK });
    span.end();
    runs[component] = span.spanContext().spanId;
    await pause(5);
  }

  const ingest = () => ['id,value\n1,3\n2,\n3,7\n'];
  const clean = (raw) => [raw.split('\n').filter((line) => !line.endsWith(',')).join('\n')];
  const report = (cleaned) => [`rows: ${cleaned.trim().split('\n').length - 1}\n`];
  await step(`js-${kind}-ingest`, ingest, { inputs: [], outputs: [pointer('raw.csv')] });
  await step(`js-${kind}-clean`, clean, {
    inputs: [pointer('raw.csv')], outputs: [pointer('clean.csv')], threshold: 3600.5,
  });
  await step(`js-${kind}-report`, report, {
    inputs: [pointer('clean.csv')], outputs: [pointer('report.txt')], threshold: 86400, test: 'RowCount',
  });

  try {
    await provider.forceFlush();
  } catch (err) {
    exporter.failures.push(`forceFlush: ${err && (err.stack || err)}`);
  }
  await provider.shutdown();
  if (exporter.failures.length || exporter.exported !== 3) {
    fail(`${kind} export to ${url} failed (${exporter.exported}/3 spans acknowledged): `
      + exporter.failures.join('; '));
  }
  process.stdout.write(`${JSON.stringify({ kind, exported: exporter.exported, runs })}\n`);
}

main().catch((err) => fail(err && (err.stack || String(err))));

// Which environment turns span export on: an OTLP endpoint, unless the SDK is disabled or the
// traces exporter is `none`.
import t from 'tap'
import { tracingWanted } from '../../src/tracing/tracing.js'

t.test('an OTLP endpoint turns export on; nothing else does', async (t) => {
  t.notOk(tracingWanted({}))
  t.notOk(tracingWanted({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }), 'other variables alone: off')
  t.notOk(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), 'blank: off')
  t.ok(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }))
  t.ok(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }))
})

t.test('OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none keep it off', async (t) => {
  const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }
  t.notOk(tracingWanted({ ...endpoint, OTEL_SDK_DISABLED: 'TRUE' }))
  t.ok(tracingWanted({ ...endpoint, OTEL_SDK_DISABLED: 'false' }))
  t.notOk(tracingWanted({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }))
  t.notOk(tracingWanted({ ...endpoint, OTEL_TRACES_EXPORTER: 'otlp, none' }))
  t.ok(tracingWanted({ ...endpoint, OTEL_TRACES_EXPORTER: 'otlp' }))
})

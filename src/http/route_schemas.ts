// fastify compiles a validator (ajv) and a serializer (fast-json-stringify) for routes that
// declare schemas; jwtgate's routes declare none, and the policy is validated by the build's
// standalone validator (policy/schema.ts). Left to itself fastify still loads both compilers, with
// ajv-formats, for every instance (lib/schema-controller.js): these factories keep them out of
// the process, and a route given a schema by mistake fails at start instead of going unchecked.
import type { FastifyServerOptions } from 'fastify'

const refuse = (what: string) => () => () => {
  throw new Error(`jwtgate's fastify routes declare no ${what} schemas; this one does`)
}

export const NO_ROUTE_SCHEMAS: FastifyServerOptions['schemaController'] = {
  compilersFactory: { buildValidator: refuse('request'), buildSerializer: refuse('response') },
}

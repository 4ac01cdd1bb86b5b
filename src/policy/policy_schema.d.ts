// What `#policy-schema` exports (package.json "imports"): the module `npm run build` generates into
// dist/generated/ from schema_definition.ts (json_schema.ts policySchemaModule). Declared here so
// the project type-checks before a build; schema.ts gives the schema its definition's types.
import type { ValidateFunction } from 'ajv'

/** The policy's JSON Schema, as published in schema/policy.schema.json. */
export declare const policySchema: object
/** ajv's standalone validator for it, with the loader's options (coercing, all errors, verbose). */
export declare const validatePolicyDocument: ValidateFunction

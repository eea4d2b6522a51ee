/** The schema names the fixture is built from. */
export declare const ROOTS: string[];
/** Builds the fixture from a parsed OpenAPI document: the `roots` and every schema they reference. */
export declare function extract(
  spec: { openapi?: string; info?: { version?: string }; components: { schemas: Record<string, unknown> } },
  source: Record<string, unknown>,
  roots?: string[],
): {
  source: Record<string, unknown> & { roots: string[] };
  schema: { $schema: string; $id: string; $defs: Record<string, unknown> };
};

// AWS-style errors: a code clients switch on, a message for people, and the HTTP status AWS uses.

const STATUS: Record<string, number> = {
  AuthFailure: 401,
  SignatureDoesNotMatch: 403,
  InvalidClientTokenId: 403,
  UnauthorizedOperation: 403,
  OptInRequired: 403,
  RequestExpired: 400,
  IncompleteSignature: 400,
  MissingAuthenticationToken: 403,
  InvalidAction: 400,
  MissingParameter: 400,
  MissingAction: 400,
  NoSuchVersion: 400,
  XAmzContentSHA256Mismatch: 400,
  RequestEntityTooLarge: 413,
  InvalidParameter: 400,
  InvalidParameterValue: 400,
  InvalidParameterCombination: 400,
  UnknownParameter: 400,
  MalformedQueryString: 404,
  InsufficientInstanceCapacity: 500,
  InternalError: 500,
  ServiceUnavailable: 503,
  Unavailable: 503,
  RequestLimitExceeded: 503,
};

export class Ec2Error extends Error {
  readonly status: number;
  constructor(public readonly code: string, message: string, status?: number) {
    super(message);
    this.name = 'Ec2Error';
    this.status = status ?? STATUS[code] ?? 400;
  }
}

/** Convenience constructors for the errors every action raises. */
export const errors = {
  missing: (param: string) => new Ec2Error('MissingParameter', `The request must contain the parameter ${param}`),
  invalidValue: (param: string, value: unknown, why = '') =>
    new Ec2Error('InvalidParameterValue', `Value (${String(value)}) for parameter ${param} is invalid.${why ? ' ' + why : ''}`),
  notFound: (kind: string, id: string, message?: string) => new Ec2Error(`${kind}.NotFound`, message ?? `The ${kind.replace(/^Invalid/, '').replace(/ID$/, ' ID')} '${id}' does not exist`),
  malformed: (kind: string, id: string) => new Ec2Error(`${kind}.Malformed`, `Invalid id: "${id}"`),
  duplicate: (kind: string, message: string) => new Ec2Error(`${kind}.Duplicate`, message),
};

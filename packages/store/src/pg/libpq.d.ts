// The part of the `libpq` binding's blocking API the PostgreSQL driver uses (the package ships no types).
declare module 'libpq' {
  export default class PQ {
    connectSync(params?: string): void;
    finish(): void;
    exec(text: string): void;
    prepare(name: string, text: string, nParams: number): void;
    execPrepared(name: string, values: (string | null)[]): void;
    resultStatus(): string;
    resultErrorMessage(): string;
    resultErrorFields(): Record<string, string> | undefined;
    errorMessage(): string;
    transactionStatus(): 'PQTRANS_IDLE' | 'PQTRANS_ACTIVE' | 'PQTRANS_INTRANS' | 'PQTRANS_INERROR' | 'PQTRANS_UNKNOWN';
    ntuples(): number;
    nfields(): number;
    fname(column: number): string;
    ftype(column: number): number;
    getvalue(row: number, column: number): string;
    getisnull(row: number, column: number): boolean;
    cmdTuples(): string;
  }
}

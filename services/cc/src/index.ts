// placeholder until this package lands
export {};

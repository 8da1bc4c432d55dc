export declare function importSpecifiers(fileName: string, text: string): string[];
export declare function checkCycles(root: string): string[];

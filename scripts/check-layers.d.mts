export declare const LAYERS: readonly { dir: string; name: string }[];
export declare function checkLayers(root: string): string[];

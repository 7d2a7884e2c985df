//! torchvision's ImageNet-1k class names (`_IMAGENET_CATEGORIES`); index = class id.

const IMAGENET: &str = include_str!("imagenet_classes.txt");

/// The 1000 class names, in class-id order.
pub fn imagenet_classes() -> Vec<&'static str> {
    IMAGENET.lines().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_classes() {
        let classes = imagenet_classes();
        assert_eq!(classes.len(), 1000);
        assert_eq!(classes[0], "tench");
        assert_eq!(classes[1], "goldfish");
        assert_eq!(classes[207], "golden retriever");
        assert_eq!(classes[281], "tabby");
        assert_eq!(classes[999], "toilet tissue");
    }
}
